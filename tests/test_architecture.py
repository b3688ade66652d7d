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


# --------------------------------------------------------------------------- floors

#: The package's floors, lowest first: a module imports only from its own floor or the ones below.
#: ``core`` is the top-level modules (errors, constants, config, progress, backend); only ``cli``
#: (the command layer) sits above ``report``, so compute never imports presentation.
FLOORS = ("core", "runs", "datasets", "models", "evaluation", "audit", "report", "cli")
#: Libraries a function may import lazily (heavy, or optional extras), each with a reason on the line.
LAZY_LIBRARIES = ("tensorflow", "keras", "ray", "onnxruntime", "weasyprint", "cleanlab")
#: ferreport modules that load a lazy library when imported, through a call at module level the
#: import scan cannot see: ``backend`` imports TensorFlow with its start-up noise filtered.
HEAVY_AT_IMPORT = ("ferreport.backend",)


def floor_of(module: str) -> str:
    parts = module.split(".")
    if module == "ferreport.__main__":
        return "cli"
    if len(parts) >= 3 or (len(parts) == 2 and _is_package(module)):
        return parts[1]
    return "core"


def floor_violations(modules: dict[str, ast.Module]) -> list[str]:
    bad = []
    for importer, target, _ in imports(modules):
        if target not in modules and target.rpartition(".")[0] not in modules:
            continue
        here, there = FLOORS.index(floor_of(importer)), FLOORS.index(floor_of(target))
        if there > here:
            bad.append(f"{importer} ({FLOORS[here]}) imports {target} ({FLOORS[there]})")
    return sorted(set(bad))


def _top_level_imports(tree: ast.Module) -> list[ast.stmt]:
    """Imports outside functions (module body, if/try blocks, classes)."""
    out: list[ast.stmt] = []
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))
    return out


def heavy_modules(modules: dict[str, ast.Module]) -> set[str]:
    """ferreport modules whose import loads a lazy library (through their module-level imports)."""
    direct: dict[str, set[str]] = {m: set() for m in modules}
    heavy = {m for m in HEAVY_AT_IMPORT if m in modules}
    for name, tree in modules.items():
        for node in _top_level_imports(tree):
            targets = [a.name for a in node.names] if isinstance(node, ast.Import) else [_resolve(name, node)]
            for t in targets:
                if t.split(".")[0] in LAZY_LIBRARIES:
                    heavy.add(name)
                elif t.startswith("ferreport"):
                    direct[name].add(t if t in modules else t.rpartition(".")[0])
                    if isinstance(node, ast.ImportFrom):
                        direct[name].update(f"{t}.{a.name}" for a in node.names if f"{t}.{a.name}" in modules)
    changed = True
    while changed:
        changed = False
        for name, deps in direct.items():
            if name not in heavy and deps & heavy:
                heavy.add(name)
                changed = True
    return heavy


def lazy_import_violations(modules: dict[str, ast.Module], sources: dict[str, list[str]]) -> list[str]:
    """Imports inside functions that are not of a lazy library (or a module that loads one), or carry no reason."""
    heavy = heavy_modules(modules)
    bad = []
    for name, tree in modules.items():
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                targets = [a.name for a in node.names] if isinstance(node, ast.Import) else [_resolve(name, node)]
                line = " ".join(sources[name][node.lineno - 1:node.end_lineno])  # the reason: any line of it
                for t in targets:
                    ok = t.split(".")[0] in LAZY_LIBRARIES or (t.startswith("ferreport") and (
                        t in heavy or any(f"{t}.{a.name}" in heavy for a in node.names)))
                    if not ok:
                        bad.append(f"{name}:{node.lineno} imports {t} inside a function")
                    elif "#" not in line:
                        bad.append(f"{name}:{node.lineno} imports {t} inside a function without a reason")
    return sorted(set(bad))


def long_functions(limit: int = 120) -> list[str]:
    out = []
    for p in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > limit:
                out.append(f"{p.relative_to(PACKAGE)}:{node.lineno} {node.name} "
                           f"({node.end_lineno - node.lineno + 1} lines)")
    return out


def test_floors_only_import_downwards(modules: dict[str, ast.Module]) -> None:
    assert floor_violations(modules) == []


def test_only_the_command_layer_imports_the_report(modules: dict[str, ast.Module]) -> None:
    users = {floor_of(importer) for importer, target, _ in imports(modules)
             if floor_of(target) == "report" and floor_of(importer) != "report"}
    assert users <= {"cli"}, users


def test_imports_inside_functions_are_heavy_libraries_with_a_reason(modules: dict[str, ast.Module]) -> None:
    sources = {_module_name(p): p.read_text().splitlines() for p in sorted(PACKAGE.rglob("*.py"))}
    assert lazy_import_violations(modules, sources) == []


def test_no_function_is_over_120_lines() -> None:
    assert long_functions() == []


def test_the_floor_checks_see_what_they_look_for() -> None:
    """A planted upward import, a light lazy import and a reasonless heavy one are all found."""
    planted = {
        "ferreport.runs": ast.parse(""), "ferreport.report": ast.parse(""),
        "ferreport.runs.folder": ast.parse("from ferreport.report.render import x\n"),
        "ferreport.report.render": ast.parse("def f():\n    import json\n    import tensorflow\n"),
    }
    assert floor_violations(planted) == ["ferreport.runs.folder (runs) imports ferreport.report.render (report)"]
    sources = {"ferreport.report.render": ["def f():", "    import json", "    import tensorflow"],
               "ferreport.runs.folder": [""], "ferreport.runs": [""], "ferreport.report": [""]}
    assert lazy_import_violations(planted, sources) == [
        "ferreport.report.render:2 imports json inside a function",
        "ferreport.report.render:3 imports tensorflow inside a function without a reason"]


def test_only_the_run_folder_names_its_files(modules: dict[str, ast.Module]) -> None:
    """A run artefact's file name is spelled in ferreport.runs.folder alone: everything else asks it."""
    from ferreport.runs import folder

    names = {v for k, v in vars(folder).items() if k.isupper() and isinstance(v, str) and "." in v}
    assert {"predictions.csv", "metrics.json", "provenance.json", "slices.json", "model.keras"} <= names
    elsewhere = {("ferreport.models.onednn", "config.json")}  # the Keras config inside a .keras archive
    spelled = []
    for name, tree in modules.items():
        if name == "ferreport.runs.folder":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and (name, node.value) not in elsewhere:
                spelled.append(f"{name}:{node.lineno} {node.value!r}")
    assert spelled == []


@pytest.mark.parametrize("package", ["datasets", "models", "evaluation", "audit", "runs"])
def test_each_subpackage_exports_its_public_api_lazily(package: str) -> None:
    """Every exported name resolves to the object its module defines; importing the package loads no TensorFlow."""
    import subprocess
    import sys

    code = (f"import importlib, sys\nimport ferreport.{package} as pkg\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
            "for name, module in pkg.EXPORTS.items():\n"
            "    assert getattr(pkg, name) is getattr(importlib.import_module(f'{pkg.__name__}.{module}'), name), "
            "name\n"
            "    assert not name.startswith('_')\n"
            "assert sorted(pkg.__all__) == sorted(pkg.EXPORTS)\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(PACKAGE.parent))
