"""Every Kafka client of the services is built in one place (continuum.kafka), so a connection
setting (TLS, SASL, a pass-through property) reaches all of them; the services hand it their
settings, never a bare bootstrap string."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("continuum", "streams", "inference", "producers", "jobs")
# The embedded broker manages itself over its own plaintext listener.
EXEMPT = {"continuum/kafka.py", "continuum/localkafka.py"}


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
