"""The alert consumer against a real local HTTP server standing in for Slack, on the real broker."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from continuum.settings import Settings
from continuum.topics import topic_spec
from jobs.alert_consumer import AlertDelivery, Target
from jobs.notify import RetryPolicy
from producers.deadletter import DeadLetter
from producers.producer import EventProducer
from schemas.serde import AvroDeserializer
from tests.examples import EXAMPLES
from tests.integration.conftest import wait_for
from tests.integration.fakes import SECRET, FakeSlack
from tests.integration.kafka_read import read_topic

pytestmark = pytest.mark.integration


@pytest.fixture()
def slack():
    fakes: list[FakeSlack] = []

    def make(script=None) -> FakeSlack:
        fakes.append(FakeSlack(script))
        return fakes[-1]

    yield make
    for f in fakes:
        f.close()


def send_alerts(bootstrap: str, prefix: str, *alerts: dict[str, Any]) -> None:
    with EventProducer(bootstrap, topic_prefix=prefix) as p:
        for a in alerts:
            p.send("Alert", a)


def alert(n: int, key: str | None = None, **kw: Any) -> dict[str, Any]:
    base = dict(EXAMPLES["Alert"])
    base.update(
        event_id=f"00000000-0000-4000-8000-{n:012d}",
        dedup_key=key or f"key-{n}",
        title=f"Alert {n}",
        **kw,
    )
    return base


def delivery(broker, prefix, tmp_path, fake: FakeSlack, **kw) -> AlertDelivery:
    settings = Settings(bootstrap_servers=broker.bootstrap, topic_prefix=prefix, home=tmp_path)
    kw.setdefault("policy", RetryPolicy(max_attempts=5, base_s=0.05, cap_s=0.2))
    return AlertDelivery(settings, Target.of("slack", fake.url), group_id=f"{prefix}slack", **kw)


def drain(d: AlertDelivery, until, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out delivering"
        d.poll_once(0.3)


def test_normal_delivery_block_kit_and_no_secret_in_logs(broker, prefix, tmp_path, slack, caplog):
    caplog.set_level(logging.DEBUG)
    fake = slack([(500, {})])  # one failure, so the retry path logs too
    send_alerts(broker.bootstrap, prefix, alert(1), alert(2), alert(3))
    d = delivery(broker, prefix, tmp_path, fake)
    try:
        drain(d, lambda: len(fake.accepted) == 3)
    finally:
        d.close()
    titles = [b["blocks"][0]["text"]["text"] for b in fake.accepted]
    assert [t.split("] ")[1] for t in titles] == ["Alert 1", "Alert 2", "Alert 3"]
    assert len(fake.attempts) == 4  # 500 then success for the first, one each for the others
    assert SECRET not in caplog.text


def test_429_retry_after_is_waited_and_posted_once(broker, prefix, tmp_path, slack):
    fake = slack([(429, {"Retry-After": "1"})])
    send_alerts(broker.bootstrap, prefix, alert(1))
    d = delivery(broker, prefix, tmp_path, fake)
    try:
        drain(d, lambda: len(fake.accepted) == 1)
    finally:
        d.close()
    assert len(fake.attempts) == 2 and fake.attempts[1] - fake.attempts[0] >= 0.95


def test_killed_between_post_and_commit_still_posts_once(broker, prefix, tmp_path, slack):
    fake = slack()
    send_alerts(broker.bootstrap, prefix, alert(1), alert(2))

    class Crash(BaseException):
        pass

    def crash() -> None:
        raise Crash

    d = delivery(broker, prefix, tmp_path, fake, before_commit=crash)
    with pytest.raises(Crash):
        drain(d, lambda: False)
    d.close()  # the process is gone; its offsets were never committed
    assert len(fake.accepted) == 2
    again = delivery(broker, prefix, tmp_path, fake)
    try:
        drain(again, lambda: again.skipped == 2)
        assert again.poll_once(1.0) == 0  # committed now: nothing comes back
    finally:
        again.close()
    assert len(fake.accepted) == 2


def test_burst_of_one_alert_is_collapsed(broker, prefix, tmp_path, slack):
    fake = slack()
    send_alerts(
        broker.bootstrap, prefix, *(alert(i, key="drift:x", severity="HIGH") for i in range(5))
    )
    d = delivery(broker, prefix, tmp_path, fake)
    try:
        wait_for(lambda: d.poll_once(0.5) > 0 or bool(fake.accepted), 30)
        drain(d, lambda: d.store.count() == 5)
    finally:
        d.close()
    assert len(fake.accepted) <= 2  # one per poll that saw the burst, usually exactly one
    assert "earlier update(s) of this alert collapsed" in json.dumps(fake.accepted)


def test_webhook_down_for_a_while_then_past_the_limit(broker, prefix, tmp_path, slack):
    fake = slack([(503, {})] * 3)  # down briefly: delivered later, nothing lost
    send_alerts(broker.bootstrap, prefix, alert(1))
    d = delivery(broker, prefix, tmp_path, fake)
    try:
        drain(d, lambda: len(fake.accepted) == 1)
    finally:
        d.close()
    assert len(fake.attempts) == 4

    down = slack([(500, {})] * 50)  # down for good: dead-lettered after the limit
    send_alerts(broker.bootstrap, prefix, alert(2))
    d = delivery(broker, prefix, tmp_path, down)
    try:
        drain(d, lambda: d.dead_lettered == 1)
    finally:
        d.close()
    assert len(down.attempts) == 5 and down.accepted == []
    topic = topic_spec("alerts").full_name(prefix)
    [dead] = [
        DeadLetter.from_headers(None, v, h) for v, h in read_topic(broker.bootstrap, topic + ".dlq")
    ]
    assert "gave up after 5 attempts: HTTP 500" in dead.error and SECRET not in dead.error
    # The failing delivery is reported as a request to the alert owner (the streams workers),
    # which opens one alert per outage; the consumer itself writes nothing on the alerts topic.
    decoded = [AvroDeserializer().decode(v).record for v, _ in read_topic(broker.bootstrap, topic)]
    assert not [a for a in decoded if a["source"] == "alert-consumer"]
    requests_topic = topic_spec("alert-requests").full_name(prefix)
    requests = [
        AvroDeserializer().decode(v).record for v, _ in read_topic(broker.bootstrap, requests_topic)
    ]
    delivery_requests = [r for r in requests if r["source"] == "alert-consumer"]
    assert len(delivery_requests) == 1 and delivery_requests[0]["status"] == "OPEN"
    assert delivery_requests[0]["title"] == "Alert delivery to slack is failing"
    assert delivery_requests[0]["dedup_key"] == "delivery:slack"
