"""Settings of the streams worker: the common ones plus windowing and web."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from continuum.settings import Settings


@dataclass(frozen=True)
class StreamsSettings(Settings):
    app_id: str = field(
        default="continuum-streams", metadata={"help": "Faust application id (consumer group)"}
    )
    web_host: str = field(
        default="127.0.0.1", metadata={"help": "Address of the web views and /metrics"}
    )
    web_port: int = field(default=6066, metadata={"help": "Port of the web views and /metrics"})
    advertised_host: str = field(
        default="",
        metadata={
            "help": "Host other workers reach this one's views at (keyed views are forwarded to "
            "the key's owner); default the web host, or this machine's name when that is 0.0.0.0"
        },
    )
    views_read_token: str = field(
        default="",
        metadata={
            "help": "bearer token every read view needs (the API token works too); /health/, "
            "/metrics and the dashboard page stay open (the page takes it as #token=...); "
            "empty: reads are open",
            "secret": True,
        },
    )
    window_s: int = field(default=3600, metadata={"help": "Drift window length, seconds"})
    hop_s: int = field(
        default=300, metadata={"help": "Drift window hop (and bucket size), seconds"}
    )
    freeze_after: int = field(
        default=1000, metadata={"help": "Turns frozen into a baseline when none exists"}
    )
    batch_size: int = field(default=2000, metadata={"help": "Most events folded per batch"})
    batch_within_s: float = field(
        default=0.1, metadata={"help": "Longest wait to fill a stage-1 batch, seconds"}
    )
    thresholds: str = field(
        default="",
        metadata={
            "help": "Global threshold values, name=value,... (names: `continuum thresholds "
            "names`); over the seed defaults and the thresholds file, under per-model overrides"
        },
    )
    thresholds_file: str = field(
        default="", metadata={"help": "JSON file of global threshold values {name: value}"}
    )
    probation_s: float = field(
        default=86_400.0,
        metadata={
            "help": "A version promoted less than this ago is rolled back to the one it replaced "
            "on a CRITICAL alert, seconds; 0 = never"
        },
    )
    dedupe_ids: int = field(
        default=20_000,
        metadata={
            "help": "Event ids remembered per input partition to drop an event that reaches the "
            "topic twice (rebuilt from the partition's tail after a restart); 0 = off"
        },
    )
    service_timeout_s: float = field(
        default=30.0,
        metadata={"help": "Inference worker silent this long = down (SERVICE_DOWN), seconds"},
    )
    memory_limit_mb: int = field(
        default=0,
        metadata={
            "help": "Memory limit MEMORY_USAGE is measured against, MiB; 0 = the container's "
            "limit (cgroup), else the machine's memory"
        },
    )
    partials_partitions: int = field(
        default=6, metadata={"help": "Partitions of the internal partials topic"}
    )

    def global_thresholds(self) -> dict[str, float]:
        """The thresholds file, then the ``thresholds`` setting, checked (ValueError naming what
        is wrong)."""
        from streams.logic.thresholds import check, load_file, parse_assignments

        values = load_file(self.thresholds_file) if self.thresholds_file else {}
        try:
            values.update(check(parse_assignments([self.thresholds])))
        except ValueError as exc:
            raise ValueError(f"{self.env_name('thresholds')}: {exc}") from None
        return values

    def canonical_url(self) -> str:
        host = self.advertised_host or self.web_host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return f"http://{host}:{self.web_port}"
