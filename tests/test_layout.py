"""The package layout follows the data path: imports flow one way, no cycles, small modules."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "s2ilib"
# Lower layers never import higher ones: the data path wav -> features -> encoder -> embedding
# -> generator -> image -> metric, then the study that ties it together, then the entry points.
LAYERS = ["core", "speech", "data", "models", "evaluation", "training", "study", "entry"]
MAX_LINES = 420


def _module_name(path: Path) -> str:
    rel = path.relative_to(LIB.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(LIB.rglob("*.py"))}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every s2ilib module ``path`` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from pkg import mod`` imports the module; ``from mod import name`` the module
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            if t.startswith("s2ilib"):
                while t and t not in known:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    out.add(t)
    return out


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "entry"  # the s2ilib package itself
    return parts[1] if parts[1] in LAYERS else "entry"


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {m: _imports(p, m, known) - {"s2ilib"} for m, p in mods.items()}


def test_imports_flow_one_way_between_packages():
    wrong = []
    for mod, deps in _graph().items():
        for dep in deps:
            if LAYERS.index(_layer(dep)) > LAYERS.index(_layer(mod)):
                wrong.append(f"{mod} imports {dep} ({_layer(mod)} -> {_layer(dep)})")
    assert not wrong, "imports against the data path:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle_between_modules():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_cycle_check_can_fail(tmp_path):
    """The walker sees function-level imports (the usual way a cycle hides)."""
    f = tmp_path / "mod.py"
    f.write_text("def g():\n    from s2ilib.core import io\n")
    assert _imports(f, "s2ilib.x", {"s2ilib.core", "s2ilib.core.io"}) == {"s2ilib.core.io"}


def test_modules_are_small():
    big = {m: n for m, p in _modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"
