"""The package's shape, checked from its source: no import cycles, no reaching into
another module's private names, TensorFlow's log filter set in one place.

Imports inside functions count too: a cycle hidden behind a function-level import is
still a cycle for a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ferreport"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), filename=str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return (PACKAGE.parent / Path(*name.split(".")) / "__init__.py").is_file()


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not _is_package(importer):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(modules: dict[str, ast.Module]) -> list[tuple[str, str, str | None]]:
    """(importer, imported module, imported name or None) for every ferreport import."""
    out = []
    for name, tree in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                out += [(name, a.name, None) for a in node.names if a.name.startswith("ferreport")]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, node)
                if not target.startswith("ferreport"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:  # ``from . import plots`` imports a module
                        out.append((name, sub, None))
                    else:
                        out.append((name, target, alias.name))
    return out


def graph(modules: dict[str, ast.Module]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for importer, target, _ in imports(modules):
        if target in modules and target != importer:
            edges[importer].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _parent_package(name: str) -> str:
    return name if _is_package(name) else name.rpartition(".")[0]


def private_imports(modules: dict[str, ast.Module]) -> list[str]:
    """``from .x import _y`` across modules; a package's own ``__init__`` and dunders excepted."""
    bad = []
    for importer, target, name in imports(modules):
        if name is None or not name.startswith("_") or name.startswith("__"):
            continue
        if target == importer:
            continue
        bad.append(f"{importer} imports {target}.{name}")
    for name, tree in modules.items():  # module._private attribute access on an imported module
        aliases = {a.asname or a.name: a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                   for a in node.names if f"{_resolve(name, node)}.{a.name}" in modules}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                bad.append(f"{name} uses {aliases[node.value.id]}.{node.attr}")
    return sorted(set(bad))


@pytest.fixture(scope="module")
def modules() -> dict[str, ast.Module]:
    return _modules()


def test_no_import_cycles(modules: dict[str, ast.Module]) -> None:
    assert cycles(graph(modules)) == []


def test_no_private_names_across_modules(modules: dict[str, ast.Module]) -> None:
    assert private_imports(modules) == []


def test_tensorflow_log_filter_set_in_one_place() -> None:
    setters = [str(p.relative_to(PACKAGE)) for p in sorted(PACKAGE.rglob("*.py"))
               if "TF_CPP_MIN_LOG_LEVEL\", \"" in p.read_text() or "TF_CPP_MIN_LOG_LEVEL', '" in p.read_text()]
    assert len(setters) == 1, setters


def test_the_checks_see_what_they_look_for(tmp_path: Path) -> None:
    """The detectors themselves: a planted cycle and a planted private import are found."""
    a = ast.parse("from .b import helper\n")
    b = ast.parse("def f():\n    from .a import _secret\n")
    planted = {"ferreport.a": a, "ferreport.b": b}
    assert cycles(graph(planted)) == [["ferreport.a", "ferreport.b"]]
    assert private_imports(planted) == ["ferreport.b imports ferreport.a._secret"]
    c = ast.parse("from . import a\nx = a._secret\n")
    assert private_imports({"ferreport.a": a, "ferreport.c": c}) == ["ferreport.c uses a._secret"]
