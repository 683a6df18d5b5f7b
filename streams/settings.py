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
    service_timeout_s: float = field(
        default=30.0,
        metadata={"help": "Inference worker silent this long = down (SERVICE_DOWN), seconds"},
    )
    partials_partitions: int = field(
        default=6, metadata={"help": "Partitions of the internal partials topic"}
    )

    def canonical_url(self) -> str:
        host = self.advertised_host or self.web_host
        if host in ("0.0.0.0", "::", ""):
            host = socket.gethostname()
        return f"http://{host}:{self.web_port}"
