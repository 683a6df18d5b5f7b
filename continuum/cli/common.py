"""What every command shares: the connection flags (one per :class:`Settings` field, overriding
the environment), a service's own settings flags, sub-actions with their own flags, times."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

from continuum.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]
Commands = Any  # argparse's sub-parsers action (private type)
S = TypeVar("S", bound=Settings)


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("connection (flags override the environment)")
    for f in fields(Settings):
        if f.metadata.get("secret") or f.metadata.get("flag") is False:
            continue  # secrets come from the environment (or files) only, never from argv
        g.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f"setting_{f.name}",
            default=None,
            metavar=f.name.upper(),
            help=f"{f.metadata.get('help', '')} [env {Settings.env_name(f.name)}, "
            f"default {f.default}]",
        )


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for f in fields(Settings):
        raw = getattr(args, f"setting_{f.name}", None)
        if raw is not None:
            overrides[f.name] = Settings._coerce(f.type, raw)
    settings = Settings.from_env(**overrides)
    # A broker on a non-default port implies the bootstrap address unless given explicitly.
    if "kafka_port" in overrides and "bootstrap_servers" not in overrides:
        settings = settings.with_(bootstrap_servers=f"127.0.0.1:{settings.kafka_port}")
    return settings


def command(sub: Commands, name: str, handler: Handler, **kw: Any) -> argparse.ArgumentParser:
    """A command without sub-actions: its parser, with the connection flags."""
    p: argparse.ArgumentParser = sub.add_parser(name, **kw)
    add_settings_flags(p)
    p.set_defaults(handler=handler, command=name)
    return p


class Actions:
    """A command whose actions take their own flags (``continuum thresholds set ...``): each
    action is a sub-command with its handler; flags shared by every action are added with
    :meth:`shared` to each of them. ``args.action`` names the action."""

    def __init__(self, sub: Commands, name: str, **kw: Any) -> None:
        self.name = name
        self.parser: argparse.ArgumentParser = sub.add_parser(name, **kw)
        self.parser.set_defaults(command=name)
        self.actions = self.parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        self.leaves: list[argparse.ArgumentParser] = []

    def add(self, action: str, handler: Handler, **kw: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = self.actions.add_parser(action, **kw)
        add_settings_flags(p)
        p.set_defaults(handler=handler)
        self.leaves.append(p)
        return p

    def shared(self, *flags: str, **kw: Any) -> None:
        for p in self.leaves:
            p.add_argument(*flags, **kw)


def add_service_flags(p: argparse.ArgumentParser, cls: type[Settings]) -> None:
    """One flag per field a service's settings add to the common ones (``svc_`` dests)."""
    common = {g.name for g in fields(Settings)}
    for f in fields(cls):
        if f.name in common:
            continue
        p.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f"svc_{f.name}",
            default=None,
            help=f"{f.metadata.get('help', '')} [env {Settings.env_name(f.name)}, default {f.default}]",
        )


def service_settings(args: argparse.Namespace, settings: Settings, cls: type[S]) -> S:
    types = {f.name: f.type for f in fields(cls)}
    overrides = {
        k.removeprefix("svc_"): Settings._coerce(types[k.removeprefix("svc_")], v)
        for k, v in vars(args).items()
        if k.startswith("svc_") and v is not None
    }
    base = {f.name: getattr(settings, f.name) for f in fields(Settings)}
    return cls.from_env(**{**base, **overrides})


def time_ms(raw: str | None) -> int | None:
    """ISO-8601 (UTC if no zone) or epoch milliseconds."""
    if raw is None:
        return None
    if raw.isdigit():
        return int(raw)
    from datetime import UTC, datetime

    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"time {raw!r}: expected ISO-8601 like 2026-01-01T00:00 or epoch ms"
        ) from None
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


def stop_on_signals(event: Any) -> None:
    """SIGINT/SIGTERM set ``event`` (a threading.Event): the loop finishes its batch and exits."""
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: event.set())


def comma_list(text: str | None) -> tuple[str, ...]:
    """A comma list flag (empty when not given)."""
    return tuple(k.strip() for k in (text or "").split(",") if k.strip())
