"""The import rules of docs/architecture.md, checked on the source: core imports no stage, no stage imports
another stage, and no module imports itself back through a circle (imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

REPO = Path(__file__).resolve().parent.parent
# package prefix -> source folder (pyproject's package-dir)
ROOTS = {"emocap": REPO / "emocap", "emocap.captioning": REPO / "captioning", "emocap.train": REPO / "train",
         "emocap.eval": REPO / "eval"}
STAGES = ("emocap.captioning", "emocap.train", "emocap.eval")


def _modules() -> Dict[str, Path]:
    modules = {}
    for prefix, folder in ROOTS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([prefix] + parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(path: Path, module: str) -> List[str]:
    """Every module name ``module`` imports (absolute; ``from X import y`` gives X.y and X)."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    names: List[str] = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                names.extend(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                names.append(target)
                names.extend(f"{target}.{alias.name}" for alias in child.names)
            visit(child)
    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return names


def _stage_of(module: str):
    return next((s for s in STAGES if module == s or module.startswith(s + ".")), None)


def import_graph() -> Dict[str, Set[str]]:
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        graph[module] = {n for n in _imported_names(path, module) if n in modules and n != module}
    return graph


def test_core_imports_no_stage_and_stages_import_only_core():
    bad = []
    for module, targets in import_graph().items():
        for target in targets:
            here, there = _stage_of(module), _stage_of(target)
            if there is not None and there != here:
                bad.append(f"{module} -> {target}")
    assert not bad, "imports against the rule (core imports no stage; a stage imports only core):\n" + "\n".join(sorted(bad))


def _stage_names_in_strings(path: Path) -> List[str]:
    """String constants (docstrings aside) that name a stage module: ``importlib.import_module("emocap.eval.cli")``
    is an import by name too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docstrings and _stage_of(n.value.strip())]


def test_core_names_no_stage_module_in_code():
    bad = [f"{module}: {name!r}" for module, path in _modules().items() if _stage_of(module) is None
           for name in _stage_names_in_strings(path)]
    assert not bad, "core names stage modules (register stage commands through entry points instead):\n" + "\n".join(bad)


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def _package_edge(module: str, target: str) -> bool:
    """A package's ``__init__`` re-exporting its own submodules is not a circle (Python imports the package
    first); only count edges between modules, and from a submodule up to its package's ``__init__``."""
    return target.startswith(module + ".")


def test_no_import_circles():
    graph = import_graph()
    pruned = {m: {t for t in ts if not _package_edge(m, t)} for m, ts in graph.items()}
    cycles = _cycles(pruned)
    assert not cycles, "import circles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_a_circle_and_a_stage_import():
    graph = {"a": {"b"}, "b": {"a"}, "c": set()}
    assert _cycles(graph) == [["a", "b"]]
    assert _stage_of("emocap.eval.slices") == "emocap.eval" and _stage_of("emocap.models") is None


MAX_FUNCTION_LINES = 100
MAX_MODULE_LINES = 600


def test_functions_and_modules_stay_readable():
    """No function over 100 lines, no module over 600 (split by concern instead)."""
    long = []
    for module, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long.append(f"{module}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert not long, "too long:\n" + "\n".join(long)
