"""The local broker's secured listener: a CA and a broker certificate made with the JDK's keytool,
and the SCRAM user."""

from __future__ import annotations

import subprocess
from pathlib import Path

from continuum.localkafka.errors import BrokerError


def make_tls(d: Path, java: str, pw: str) -> None:
    """A CA and a broker certificate for 127.0.0.1 / localhost, made once in ``d`` with the
    keytool of the ``java`` in use (no other tool needed): ``ca.pem`` for clients, ``broker.p12``
    for the broker; ``pw`` protects the stores."""
    if (d / "broker.p12").exists() and (d / "ca.pem").exists():
        return
    d.mkdir(parents=True, exist_ok=True)
    java_home = Path(java).resolve().parent
    keytool = str(java_home / "keytool") if (java_home / "keytool").exists() else "keytool"
    san = "SAN=ip:127.0.0.1,dns:localhost"
    for f in ("ca.p12", "broker.p12"):
        (d / f).unlink(missing_ok=True)
    steps = [
        ["-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048",
         "-dname", "CN=Continuum local CA", "-ext", "bc:c", "-validity", "3650",
         "-keystore", "ca.p12", "-storetype", "PKCS12", "-storepass", pw],
        ["-exportcert", "-rfc", "-alias", "ca", "-keystore", "ca.p12", "-storepass", pw,
         "-file", "ca.pem"],
        ["-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048",
         "-dname", "CN=localhost", "-ext", san, "-validity", "3650",
         "-keystore", "broker.p12", "-storetype", "PKCS12", "-storepass", pw],
        ["-certreq", "-alias", "broker", "-keystore", "broker.p12", "-storepass", pw,
         "-file", "broker.csr"],
        ["-gencert", "-rfc", "-alias", "ca", "-keystore", "ca.p12", "-storepass", pw,
         "-infile", "broker.csr", "-outfile", "broker.pem", "-ext", san, "-validity", "3650"],
        ["-importcert", "-noprompt", "-alias", "ca", "-file", "ca.pem",
         "-keystore", "broker.p12", "-storepass", pw],
        ["-importcert", "-alias", "broker", "-file", "broker.pem",
         "-keystore", "broker.p12", "-storepass", pw],
    ]  # fmt: skip
    for step in steps:
        proc = subprocess.run([keytool, *step], cwd=d, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BrokerError(f"keytool {step[0]} failed:\n{proc.stdout}{proc.stderr}")


def ensure_scram_user(bootstrap: str, user: str, password: str) -> None:
    """The SCRAM user of a broker formatted before it was secured, set through the plain
    listener (a fresh one gets it at format time)."""
    from confluent_kafka.admin import (
        AdminClient,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2})
    upsert = UserScramCredentialUpsertion(
        user,
        ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
        password.encode(),
    )
    for fut in admin.alter_user_scram_credentials([upsert]).values():
        fut.result(timeout=30)
