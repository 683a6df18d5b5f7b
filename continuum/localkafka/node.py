"""A real single-node Apache Kafka (KRaft) on 127.0.0.1, run from Maven Central jars.

The broker's classpath is resolved once with Maven from ``deploy/local/pom.xml`` (jars land in
the Maven cache, the classpath in ``~/.cache/continuum/classpath-<version>.txt``); storage is formatted
with ``kafka.tools.StorageTool`` and the broker runs as ``kafka.Kafka`` in its own process group,
so it outlives the command that started it until ``stop``.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from continuum.localkafka.errors import BrokerError
from continuum.localkafka.tls import ensure_scram_user, make_tls
from continuum.settings import PROJECT_ROOT, Settings

if TYPE_CHECKING:
    from continuum.kafka import Connection

POM = PROJECT_ROOT / "deploy" / "local" / "pom.xml"
LOG4J = PROJECT_ROOT / "deploy" / "local" / "log4j2.properties"
# The resolved classpath is shared by every broker home (tests use throwaway homes).
CLASSPATH_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "continuum"

SERVER_PROPERTIES = """\
# Written by `continuum broker start`; edits are overwritten.
process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}{secure_listener}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}{secure_listener}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
inter.broker.listener.name=PLAINTEXT
log.dirs={data}
num.partitions=3
auto.create.topics.enable=true
offsets.topic.replication.factor={rf}
offsets.topic.num.partitions=10
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor={rf}
share.coordinator.state.topic.min.isr={min_isr}
default.replication.factor={rf}
min.insync.replicas={min_isr}
# Consumers (and Faust workers) join at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
log.retention.check.interval.ms=60000
log.cleaner.backoff.ms=1000
log.segment.bytes=67108864
"""

# The secured listener (``continuum broker start --secure``): TLS with the broker home's own CA,
# SCRAM-SHA-512 users created when the storage is formatted.
SECURE_PROPERTIES = """\
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\\
  org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location={keystore}
listener.name.sasl_ssl.ssl.keystore.password={store_password}
listener.name.sasl_ssl.ssl.key.password={store_password}
"""
SCRAM_USER = "continuum"


def new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def kafka_version() -> str:
    m = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    if not m:
        raise BrokerError(f"{POM}: no <kafka.version> property")
    return m.group(1)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def can_bind(port: int) -> bool:
    """Whether a listener could take ``port`` on loopback now (a port another socket holds, even
    a client's ephemeral one that is not listening, cannot be bound)."""
    if not 0 < port < 65536:
        return False
    with socket.socket() as s:
        # As the JVM's listeners do: a port with only TIME_WAIT leftovers (a restart) is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class LocalKafka:
    home: Path
    port: int = 9092
    controller_port: int = 9093
    heap: str = "512m"
    # One node of a cluster (LocalCluster): its id, the controller quorum, the shared cluster id.
    node_id: int = 1
    voters: str = ""
    cluster_id: str = ""
    cluster_size: int = 1
    # A SASL_SSL listener on this port next to the plain one (0: none).
    secure_port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalKafka:
        return cls(
            settings.home, settings.kafka_port, settings.kafka_controller_port, settings.kafka_heap
        )

    @property
    def dir(self) -> Path:
        if self.cluster_size > 1:
            return self.home / "kafka-cluster" / f"node-{self.node_id}"
        return self.home / "kafka"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def pid_file(self) -> Path:
        return self.dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "server.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- classpath ---------------------------------------------------------------------------

    def classpath(self) -> str:
        """The broker's classpath, resolved with Maven once and cached."""
        version = kafka_version()
        cache = CLASSPATH_CACHE / f"classpath-{version}.txt"
        if cache.exists():
            cp = cache.read_text().strip()
            if cp and all(Path(p).exists() for p in cp.split(os.pathsep)):
                return cp
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                "Maven (mvn) is needed to fetch the Kafka jars; install it (apt-get install maven)"
            )
        CLASSPATH_CACHE.mkdir(parents=True, exist_ok=True)
        print(
            f"Resolving Apache Kafka {version} jars from Maven Central (cached after the first run)...",
            file=sys.stderr,
            flush=True,
        )
        proc = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:build-classpath",
                f"-Dmdep.outputFile={cache}",
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not cache.exists():
            raise BrokerError(
                f"mvn dependency:build-classpath failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )
        return cache.read_text().strip()

    # -- lifecycle ---------------------------------------------------------------------------

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        # A zombie or a recycled pid is not our broker.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"kafka.Kafka" not in cmdline:
                return None
            stat = Path(f"/proc/{pid}/stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                return None
        except OSError:
            pass
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = Path(java_home, "bin", "java") if java_home else shutil.which("java")
        if not java:
            raise BrokerError(
                "java not found: install a JDK 17+ (apt-get install openjdk-17-jre-headless)"
            )
        return str(java)

    def _jvm_opts(self, heap: str) -> list[str]:
        return [
            f"-Xmx{heap}",
            "-Xms128m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.dir}",
            f"-Dlog4j2.configurationFile={LOG4J}",
        ]

    # -- the secured listener --------------------------------------------------------------------

    @property
    def tls_dir(self) -> Path:
        return self.dir / "tls"

    @property
    def secure_bootstrap(self) -> str:
        return f"127.0.0.1:{self.secure_port}"

    def configured_secure_port(self) -> int:
        """The SASL_SSL port this broker home was last started with (0: none)."""
        try:
            text = (self.dir / "server.properties").read_text()
        except OSError:
            return 0
        m = re.search(r"^listeners=.*SASL_SSL://[^:,]+:(\d+)", text, re.MULTILINE)
        return int(m.group(1)) if m else 0

    def secure_connection(self) -> Connection:
        """How a client reaches the SASL_SSL listener (SCRAM-SHA-512, the broker home's CA,
        hostname verification on): the settings of :meth:`client_env`, read as a service would."""
        return Settings.from_env(self.client_env()).kafka

    def client_env(self) -> dict[str, str]:
        """The environment a Continuum service needs for the secured listener (the password by
        file, as a secrets mount would give it)."""
        return {
            "CONTINUUM_BOOTSTRAP_SERVERS": self.secure_bootstrap,
            "CONTINUUM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CONTINUUM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CONTINUUM_KAFKA_SASL_USERNAME": SCRAM_USER,
            "CONTINUUM_KAFKA_SASL_PASSWORD_FILE": str(self.tls_dir / "client.password"),
            "CONTINUUM_KAFKA_SSL_CA_LOCATION": str(self.tls_dir / "ca.pem"),
        }

    def _secret(self, name: str) -> str:
        path = self.tls_dir / name
        if not path.exists():
            import secrets

            self.tls_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(24))
        return path.read_text().strip()

    def make_tls(self) -> None:
        """A CA and a broker certificate for 127.0.0.1 / localhost (see :func:`tls.make_tls`)."""
        make_tls(self.tls_dir, self._java(), self._secret("store.password"))

    def _ensure_scram_user(self) -> None:
        """The SCRAM user of a broker formatted before it was secured, set through the plain
        listener (a fresh one gets it at format time)."""
        ensure_scram_user(self.bootstrap, SCRAM_USER, self._secret("client.password"))

    def format_storage(self, cp: str) -> bool:
        """Write the broker's properties and format its storage unless it already is; True when
        it was formatted now."""
        props = self.dir / "server.properties"
        rf = 3 if self.cluster_size >= 3 else 1
        text = SERVER_PROPERTIES.format(
            port=self.port,
            controller_port=self.controller_port,
            data=self.data_dir,
            node_id=self.node_id,
            voters=self.voters or f"{self.node_id}@127.0.0.1:{self.controller_port}",
            rf=rf,
            min_isr=2 if rf >= 3 else 1,
            secure_listener=f",SASL_SSL://127.0.0.1:{self.secure_port}" if self.secure_port else "",
        )
        scram: list[str] = []
        if self.secure_port:
            self.make_tls()
            text += SECURE_PROPERTIES.format(
                keystore=self.tls_dir / "broker.p12", store_password=self._secret("store.password")
            )
            password = self._secret("client.password")
            scram = [f"--add-scram=SCRAM-SHA-512=[name={SCRAM_USER},password={password}]"]
        props.write_text(text)
        props.chmod(0o600)  # holds the keystore password
        if (self.data_dir / "meta.properties").exists():
            return False
        cid = self.cluster_id or new_cluster_id()
        proc = subprocess.run(
            [
                self._java(),
                *self._jvm_opts("256m"),
                "-cp",
                cp,
                "kafka.tools.StorageTool",
                "format",
                # One argument, '=': a urlsafe base64 id may start with '-', which argparse would
                # read as a flag (seen: "--cluster-id: expected one argument", 1 start in 64).
                f"--cluster-id={cid}",
                f"--config={props}",
                *scram,
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise BrokerError(f"kafka StorageTool format failed:\n{proc.stdout}{proc.stderr}")
        return True

    def start(self, timeout: float = 90.0, *, wait: bool = True) -> str:
        """Start the broker (if not running) and wait until it answers metadata requests (a node
        of a cluster: ``wait=False``, the cluster waits for its quorum)."""
        if self.running():
            self.wait_ready(timeout)
            return self.bootstrap
        for p in (self.port, self.controller_port, self.secure_port):
            if p and port_open("127.0.0.1", p):
                raise BrokerError(
                    f"port {p} on 127.0.0.1 is taken by another process; set CONTINUUM_KAFKA_PORT / "
                    "CONTINUUM_KAFKA_CONTROLLER_PORT or stop it"
                )
        cp = self.classpath()
        self.dir.mkdir(parents=True, exist_ok=True)
        # A broker formatted before it was secured gets its SCRAM user once it runs.
        add_scram_user = not self.format_storage(cp) and bool(self.secure_port)
        out = open(self.dir / "broker.out", "ab")
        proc = subprocess.Popen(
            [
                self._java(),
                *self._jvm_opts(self.heap),
                "-cp",
                cp,
                "kafka.Kafka",
                str(self.dir / "server.properties"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()
        self._proc = proc
        self.pid_file.write_text(str(proc.pid))
        if not wait:
            return self.bootstrap
        try:
            self.wait_ready(timeout, proc=proc)
            if add_scram_user:
                self._ensure_scram_user()
        except BrokerError:
            self.stop()
            raise
        return self.bootstrap

    def wait_ready(
        self, timeout: float = 90.0, proc: subprocess.Popen[bytes] | None = None
    ) -> None:
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise BrokerError(
                    f"broker exited with {proc.returncode}; see {self.dir / 'broker.out'}:\n"
                    + self._tail(self.dir / "broker.out")
                )
            if port_open("127.0.0.1", self.port):
                admin = AdminClient({"bootstrap.servers": self.bootstrap})
                try:
                    md = admin.list_topics(timeout=2)
                    if md.brokers:
                        return
                except Exception:
                    pass
            time.sleep(0.2)
        raise BrokerError(
            f"broker not ready after {timeout:.0f}s; see {self.log_file}:\n"
            + self._tail(self.log_file)
        )

    @staticmethod
    def _tail(path: Path, n: int = 20) -> str:
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 30.0, *, kill: bool = False) -> bool:
        """Stop the broker; SIGTERM (controlled shutdown), SIGKILL after ``timeout``."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._alive(pid):
            time.sleep(0.1)
        if self._alive(pid):
            os.kill(pid, signal.SIGKILL)
            while self._alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def _alive(self, pid: int) -> bool:
        proc = self._proc
        if proc is not None and proc.pid == pid and proc.poll() is not None:
            return False  # reaped our own child
        return self.pid() is not None

    def reset(self) -> None:
        """Stop and delete all broker data (topics, offsets)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def status(self) -> dict[str, object]:
        pid = self.pid()
        return {
            "running": pid is not None,
            "pid": pid,
            "bootstrap": self.bootstrap,
            "kafka_version": kafka_version(),
            "data_dir": str(self.data_dir),
            "log": str(self.log_file),
            "reachable": port_open("127.0.0.1", self.port),
            **(
                {"secure_bootstrap": self.secure_bootstrap, "secure_env": self.client_env()}
                if self.secure_port
                else {}
            ),
        }
