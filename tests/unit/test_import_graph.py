"""The packages import one way (contracts -> SDK -> services) and no module imports itself
through others, counting imports inside functions too (only ``if TYPE_CHECKING:`` blocks are
left out: they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "continuum", "producers", "streams", "inference", "jobs")


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = modules()


def _runtime_nodes(tree: ast.AST):
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports(name: str) -> set[str]:
    out = set()
    for node in _runtime_nodes(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in MODULES:
                    out.add(full)
                elif node.module in MODULES:
                    out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in MODULES}
    out.discard(name)
    return out


GRAPH = {m: imports(m) for m in MODULES}


def test_no_import_cycles() -> None:
    cycles = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for dep in sorted(GRAPH[m]):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep) :] + [dep] if dep in path else [m, dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_layers_import_one_way() -> None:
    allowed = {
        "schemas": {"schemas"},
        "continuum": {"continuum", "schemas", "producers", "streams", "inference", "jobs"},
        "producers": {"producers", "schemas", "continuum"},
        "streams": {"streams", "schemas", "continuum", "producers"},
        "inference": {"inference", "schemas", "continuum", "producers"},
        "jobs": {"jobs", "schemas", "continuum", "producers", "streams"},
    }
    wrong = [
        f"{m} imports {d}"
        for m, deps in GRAPH.items()
        for d in deps
        if d.split(".")[0] not in allowed[m.split(".")[0]]
    ]
    assert not wrong, "\n".join(wrong)
    # The continuum package's ground (settings, topics, the client layer, the local broker...)
    # imports only itself and the contracts; the entry points on top of everything (the CLI,
    # the demo and its simulators) are imported by nothing below them.
    top = ("continuum.cli", "continuum.demo")
    for m, deps in GRAPH.items():
        if m.startswith("continuum") and not m.startswith(top):
            assert all(
                d.split(".")[0] in ("continuum", "schemas") and not d.startswith(top) for d in deps
            ), f"{m} imports {sorted(deps)}"
        if not m.startswith(top):
            assert not [d for d in deps if d.startswith(top)], f"{m} imports the entry points"
    assert not [d for d in GRAPH["continuum.demo.run"] if d.startswith("continuum.cli")]
    # The ground modules the SDK builds on never reach up into the services.
    for ground in ("continuum.settings", "continuum.topics", "continuum.kafka", "continuum.retry"):
        assert all(d.split(".")[0] in ("continuum", "schemas") for d in GRAPH[ground]), ground


def test_the_logic_core_imports_no_kafka_or_faust() -> None:
    heavy = ("faust", "confluent_kafka", "aiokafka", "mode")
    for name, path in MODULES.items():
        if not name.startswith("streams.logic"):
            continue
        for node in _runtime_nodes(ast.parse(path.read_text())):
            mods = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for mod in mods:
                assert mod.split(".")[0] not in heavy, f"{name} imports {mod}"


def test_every_package_is_installed() -> None:
    """A wheel (the container image) holds only the packages pyproject lists."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for pkg in PACKAGES
        for p in (ROOT / pkg).rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)


def test_tests_share_helpers_not_each_other() -> None:
    """Shared fakes and helpers live in helper modules (fakes.py, traffic.py, ...), never in
    another test file."""
    offenders = []
    for path in (ROOT / "tests").rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith("tests.") and node.module.rsplit(".", 1)[-1].startswith(
                    "test_"
                ):
                    offenders.append(f"{path.relative_to(ROOT)} imports {node.module}")
    assert not offenders, offenders
