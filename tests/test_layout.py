"""The house reads in one look: stages are packages, data flows one way, the wheel ships all.

Imports are read with `ast` (module-level and function-level alike), so a lazy import inside
a function counts too: a stage may not reach up into an entry point even late.
"""

from __future__ import annotations

import ast

import pytest
from conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PROBE = REPO / "probe"
ENTRY_MODULES = {"__init__", "__main__", "api", "run", "grid", "table", "convert"}
ENTRY_PACKAGES = {"bench"}
# what each stage package may import (besides itself and the root package's __version__);
# the same rule each package's __init__ docstring states
ALLOWED = {
    "core": set(),
    "encoders": {"core"},
    "datasets": {"core"},
    "features": {"core", "encoders", "datasets"},
    "solvers": {"core"},
    "evaluations": {"core", "datasets", "solvers"},
    "report": {"core", "evaluations"},
    "launch": {"core", "report", "solvers"},
}


def _module_name(path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path) -> set[str]:
    """Every `probe...` module this file imports, resolved to absolute names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path.parent)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "probe"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            if base.split(".")[0] == "probe":
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    return found


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else None


def test_no_stage_module_at_the_top_level() -> None:
    top = {p.stem for p in PROBE.glob("*.py")}
    assert top <= ENTRY_MODULES, f"modules of a stage at probe/'s top level: {top - ENTRY_MODULES}"
    packages = {p.parent.name for p in PROBE.glob("*/__init__.py")}
    assert packages == set(ALLOWED) | ENTRY_PACKAGES, packages


def test_data_flows_one_way() -> None:
    """A stage imports only what its docstring allows: never an entry point or `run`."""
    bad = []
    for path in sorted(PROBE.rglob("*.py")):
        here = _stage(_module_name(path))
        if here is None:
            continue
        for target in _imports(path):
            there = _stage(target)
            if target == "probe" or target == "probe.__version__" or there == here:
                continue
            if there is None or there not in ALLOWED[here]:
                bad.append(f"{path.relative_to(REPO)} imports {target}")
    assert not bad, "\n".join(bad)


def test_stage_graph_has_no_cycle() -> None:
    seen: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(node: str, trail: list[str]) -> None:
        assert seen.get(node) != 1, f"import cycle: {' -> '.join([*trail, node])}"
        if seen.get(node) == 2:
            return
        seen[node] = 1
        for dep in sorted(ALLOWED[node]):
            visit(dep, [*trail, node])
        seen[node] = 2

    for stage in ALLOWED:
        visit(stage, [])


def test_every_package_states_what_it_owns() -> None:
    for init in sorted(PROBE.rglob("__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split()) >= 12, f"{init.relative_to(REPO)} needs a docstring"


def test_the_wheel_lists_every_package_and_ships_the_data() -> None:
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    on_disk = {_module_name(p) for p in PROBE.rglob("__init__.py")}
    mapped = {k for k in tool["package-dir"] if k != "probe"}
    assert listed == on_disk | mapped, listed ^ (on_disk | mapped)
    for package, folder in tool["package-dir"].items():
        assert (REPO / folder).is_dir(), (package, folder)
    assert (REPO / tool["package-dir"]["probe.configs"] / "config.yaml").is_file()
