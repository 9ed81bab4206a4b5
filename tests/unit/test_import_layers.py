"""No import cycles in the package: types that two sides need live below both.

Every import counts, at the top of a module or inside a function (a lazy import is still a
dependency), except those under ``if TYPE_CHECKING:``. ``from pkg import mod`` depends on ``pkg.mod``
only (importing a submodule runs its package's ``__init__``, which is not a design dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "edge_inspector"


def modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    pkg = pkg[:len(pkg) - child.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in child.names if f"{base}.{a.name}" in known]
                found.update(subs if len(subs) == len(child.names) else [base, *subs])
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {m for m in found if m in known and m != name}


def graph(level: int | None = None) -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)

    def group(m: str) -> str:
        return ".".join(m.split(".")[:level]) if level else m

    g: dict[str, set[str]] = {}
    for name, path in mods.items():
        for dep in imports_of(name, path, known):
            if group(dep) != group(name):
                g.setdefault(group(name), set()).add(group(dep))
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(g):
        if v not in index:
            strong(v)
    return found


def test_no_module_imports_itself_round_about():
    assert cycles(graph()) == []


def test_no_cycle_between_the_top_level_parts():
    """daemon <-> service, config <-> service were cycles: the wiring is on top, services below."""
    assert cycles(graph(level=2)) == []


def test_the_store_knows_nothing_of_mqtt_and_services_nothing_of_the_daemon():
    g = graph()
    assert not any(d.startswith("edge_inspector.outputs.mqtt") for d in g.get("edge_inspector.outputs.store", ()))
    for name, deps in g.items():
        if name.startswith(("edge_inspector.service", "edge_inspector.outputs", "edge_inspector.plc")):
            assert "edge_inspector.daemon" not in deps and "edge_inspector.station" not in deps, name
    assert "edge_inspector.config" not in g.get("edge_inspector.service.reload", ())  # handed a loader
