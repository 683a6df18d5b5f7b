"""Every Kafka client of the services is built in one place (continuum.kafka), so a connection
setting (TLS, SASL, a pass-through property) reaches all of them; the services hand it their
settings, never a bare bootstrap string."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("continuum", "streams", "inference", "producers", "jobs")
# The embedded broker manages itself over its own plaintext listener.
# The client layer, and the local broker's own admin calls on its plain listener.
EXEMPT = {
    "continuum/kafka.py",
    "continuum/localkafka/node.py",
    "continuum/localkafka/cluster.py",
    "continuum/localkafka/tls.py",
}


def sources() -> list[tuple[str, str]]:
    out = []
    for pkg in SERVICES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in EXEMPT:
                out.append((rel, path.read_text()))
    return out


def test_no_client_is_built_outside_the_client_layer() -> None:
    built = re.compile(r"(?<![A-Za-z_.])(Consumer|Producer|AdminClient)\(")
    offenders = [
        f"{rel}:{n}: {line.strip()}"
        for rel, text in sources()
        for n, line in enumerate(text.splitlines(), 1)
        if built.search(line) or '"bootstrap.servers"' in line
    ]
    assert not offenders, "\n".join(offenders)


def test_services_pass_their_connection_not_a_bootstrap_string() -> None:
    passed = re.compile(r"\b(EventProducer|EventConsumer|TopicAdmin)\(\s*[\w.]*bootstrap_servers")
    offenders = [rel for rel, text in sources() if passed.search(text)]
    assert not offenders, offenders


def test_one_partitioner_equal_to_kafkas() -> None:
    import random

    from aiokafka.partitioner import murmur2 as aiokafka_murmur2

    from continuum.kafka import murmur2, partition_for

    rng = random.Random(5)
    for n in range(300):
        key = bytes(rng.randrange(256) for _ in range(n % 37))
        assert murmur2(key) & 0xFFFFFFFF == aiokafka_murmur2(key), key
    # Known values of the Java client's partitioner (Utils.toPositive(murmur2(k)) % n).
    assert partition_for(b"21", 6) == (aiokafka_murmur2(b"21") & 0x7FFFFFFF) % 6
    code = "\n".join(text for _, text in sources())
    assert "murmur2(" not in code  # only continuum/kafka.py hashes keys


def test_group_keys_are_parsed_in_one_place() -> None:
    offenders = [
        f"{rel}: {line.strip()}"
        for rel, text in sources()
        if rel != "streams/logic/partials.py"
        for line in text.splitlines()
        if re.search(r'"[mpx]:"|f"[mpx]:\{|\[2:\]', line)
    ]
    assert not offenders, "\n".join(offenders)
