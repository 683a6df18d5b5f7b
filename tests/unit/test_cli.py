"""The CLI package (continuum/cli/): every command line the README and the Makefile show parses;
flags that belong to one action are refused on another; the demo and simulators get config
objects, not argparse namespaces."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from continuum.cli import GROUPS, build_parser
from continuum.cli.traffic import chat_config
from continuum.demo.chat import SimulatorConfig

ROOT = Path(__file__).resolve().parents[2]


def documented_commands() -> list[list[str]]:
    """``continuum ...`` lines of the README's code blocks and the Makefile (leading ``VAR=x``
    assignments, trailing comments and ``&`` dropped; ``a && b`` split; lines that show
    alternatives with ``|`` or elide with ``...`` left out)."""
    text = ROOT.joinpath("README.md").read_text()
    blocks = re.findall(r"```[\w-]*\n(.*?)```", text, flags=re.S)
    lines = [line for block in blocks for line in block.splitlines()]
    lines += [
        line.split("$(VENV)/bin/", 1)[1]
        for line in ROOT.joinpath("Makefile").read_text().splitlines()
        if "$(VENV)/bin/continuum " in line
    ]
    out = []
    for line in lines:
        line = line.split(" #", 1)[0].rstrip(" &\\")
        for part in line.split("&&"):
            if not re.match(r"^\s*([A-Z_]+=\S+\s+)*continuum\s", part):
                continue
            optional = part.replace("[", "").replace("]", "")  # "[--flag X]": shown optional
            words = shlex.split(optional.replace("$(DEMO_ARGS)", ""))
            while words and re.match(r"^[A-Z_]+=", words[0]):
                words.pop(0)
            if not words or words[0] != "continuum" or "|" in words or "..." in part:
                continue
            out.append(words[1:])
    return out


COMMANDS = documented_commands()


def test_the_readme_shows_commands_of_every_group() -> None:
    assert len(COMMANDS) >= 25
    shown = {words[0] for words in COMMANDS}
    for group in ("broker", "topics", "streams", "infer", "thresholds", "models", "retrain"):
        assert group in shown


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(a)[:60] for a in COMMANDS])
def test_every_documented_command_parses(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert callable(args.handler) and args.command == argv[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["broker", "stop", "--secure"],  # only start adds a listener
        ["infer", "worker", "--requests", "5"],  # a bench flag
        ["infer", "gateway", "--out", "x"],  # an export flag
        ["thresholds", "list", "--write"],  # a calibrate flag
        ["feedback", "analyze", "--min-rating", "3"],  # an export flag
        ["retrain", "check", "--new-data", "x"],  # a prepare flag
        ["experiments", "create", "e", "--winner", "control"],  # only conclude names a winner
        ["thresholds", "set", "okla-v1.0"],  # nothing to set
    ],
)
def test_a_flag_of_another_action_is_refused(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_each_action_has_the_connection_flags_and_its_own() -> None:
    args = build_parser().parse_args(
        ["broker", "start", "--secure", "--brokers", "1", "--kafka-port", "19092"]
    )
    assert (args.action, args.secure, args.brokers, args.setting_kafka_port) == (
        "start",
        True,
        1,
        "19092",
    )
    args = build_parser().parse_args(["infer", "bench", "--requests", "5", "--slots", "2"])
    assert (args.requests, args.svc_slots) == (5, "2")


def test_the_simulator_gets_a_config_object_built_from_the_flags() -> None:
    args = build_parser().parse_args(
        ["simulate", "--turns", "10", "--drift-at", "5", "--drift", "latency, tokens", "--no-ab"]
    )
    config = chat_config(args)
    assert isinstance(config, SimulatorConfig)
    assert config.turns == 10 and config.experiment_id is None
    assert config.drift is not None and config.drift.kinds == ("latency", "tokens")
    demo = build_parser().parse_args(["demo", "--seconds", "5", "--keep-broker"])
    assert chat_config(demo).turns == 0 and demo.keep_broker


def test_one_module_per_command_group() -> None:
    files = {p.stem for p in (ROOT / "continuum" / "cli").glob("*.py")}
    assert {g.__name__.rsplit(".", 1)[1] for g in GROUPS} <= files
    for group in GROUPS:
        assert callable(group.register)
