"""Stand-ins shared by the unit tests (no broker)."""

from __future__ import annotations

from typing import Any


class FakeMessage:
    def __init__(self, topic: str, key: Any) -> None:
        self._topic, self._key = topic, key

    def topic(self) -> str:
        return self._topic

    def key(self) -> Any:
        return self._key


class FakeClient:
    """Stands in for confluent_kafka.Producer: records produce calls, fails on demand."""

    def __init__(self, buffer_errors: int = 0, fail_topics: tuple[str, ...] = ()) -> None:
        self.sent: list[tuple[str, bytes, Any, Any]] = []
        self.buffer_errors = buffer_errors
        self.fail_topics = fail_topics
        self.polls = 0
        self._callbacks: list[tuple[Any, FakeMessage]] = []

    def produce(
        self,
        topic: str,
        value: bytes,
        key: Any = None,
        headers: Any = None,
        on_delivery: Any = None,
    ) -> None:
        if self.buffer_errors:
            self.buffer_errors -= 1
            raise BufferError("Local: Queue full")
        self.sent.append((topic, value, key, headers))
        self._callbacks.append((on_delivery, FakeMessage(topic, key)))

    def poll(self, timeout: float = 0) -> int:
        self.polls += 1
        return self._serve()

    def flush(self, timeout: float = 0) -> int:
        self._serve()
        return 0

    def _serve(self) -> int:
        n = len(self._callbacks)
        for cb, msg in self._callbacks:
            cb("broker down" if msg.topic() in self.fail_topics else None, msg)
        self._callbacks.clear()
        return n

    def __len__(self) -> int:
        return len(self._callbacks)
