"""The engine's layout, kept by a test rather than by reviewers' memory (issue 30).

core/ is in packages that name the architecture (core/__init__.py draws them), and each package
imports only the floors below it: a newcomer reads the tree top to bottom and never meets a cycle.
Imports hidden inside functions are for heavy optional dependencies only (TensorFlow, JAX, Ray,
Optuna, ...), never to dodge a cycle. The pages only lay out widgets and call core.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from core.store.states import STATES

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "core"

# Lowest first. A module may import (at module level) its own package and any floor below it.
FLOORS = [{"errors"}, {"settings"}, {"store", "data", "estimates", "content"}, {"analysis"}, {"training"},
          {"jobs"}, {"sweeps"}, {"__main__"}]
# Third-party packages worth importing only when used: seconds of start-up or an optional extra.
HEAVY = {"keras", "tensorflow", "jax", "ray", "optuna", "alembic", "yaml", "streamlit"}
LONGEST_FUNCTION = 80
# The one import that reaches up a floor, inside the function that needs it, and why.
REACHES_UP = {
    ("core/training/pruning.py", "core.sweeps.study"):
        "a trial's pruning callback sits with the trainer's callbacks but opens its sweep's Optuna "
        "study, only when the run is a sweep's trial and right after importing Optuna itself",
}
# String literals that spell a run state's word but name something else, each with why.
NOT_RUN_STATES = {
    ("core/sweeps/driver.py", "running"): "a sweep's own state, for tables",
    ("core/sweeps/driver.py", "stopping"): "a sweep's own state, for tables",
    ("core/sweeps/driver.py", "stopped"): "a sweep's own state, for tables",
    ("core/training/lr_find.py", "stopped"): "how the finder's test ended (its `ended` word)",
    ("core/training/train.py", "stopped"): "how the finder's test ended (its `ended` word)",
    ("dashboard/lr_panel.py", "stopped"): "how the finder's test ended (its `ended` word)",
    ("dashboard/sweep_charts.py", "pruned"): "an Optuna trial's state",
    ("pages/present.py", "pruned"): "an Optuna trial's state",
    ("pages/curves.py", "running"): "a progress phase's fallback word",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py")) if "migrations" not in p.parts}


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def imports(path: Path, *, module_level: bool) -> list[tuple[ast.stmt, str]]:
    """(statement, imported name) for each import in `path`: the module-level ones (including those
    under a module-level `if` or `try`), or those inside functions. `from a import b` yields a.b too,
    so importing a submodule counts."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import) and inside != module_level:
                found.extend((child, alias.name) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and inside != module_level:
                found.append((child, child.module))
                found.extend((child, f"{child.module}.{alias.name}") for alias in child.names)
            visit(child, inside)

    visit(tree(path), False)
    return found


def core_imports(name: str) -> set[str]:
    """The core modules `name` imports at module level."""
    modules = core_modules()
    return {target for _, target in imports(modules[name], module_level=True)
            if target in modules and target != name and not name.startswith(target + ".")}


def package(name: str) -> str:
    return name.split(".")[1] if name.count(".") else name


def floor(name: str) -> int:
    return next(i for i, packages in enumerate(FLOORS) if package(name) in packages)


def test_the_packages_cover_core():
    """Every module sits in a package on a floor (a new package gets its floor here)."""
    loose = [name for name in core_modules() if name != "core" and package(name) not in set().union(*FLOORS)]
    assert loose == []


def test_each_package_imports_only_its_own_floor_and_the_ones_below():
    upward = [f"{name} imports {target}" for name in core_modules() if name != "core"
              for target in core_imports(name)
              if package(target) != package(name) and floor(target) >= floor(name)]
    assert upward == []


def test_core_has_no_import_cycle():
    """Module-level imports between core modules form no cycle (depth-first search, three colours)."""
    colour: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(name: str, path: list[str]) -> None:
        colour[name] = "grey"
        for target in sorted(core_imports(name)):
            if colour.get(target) == "grey":
                cycles.append(path[path.index(target):] + [target])
            elif target not in colour:
                visit(target, path + [target])
        colour[name] = "black"

    for name in core_modules():
        if name not in colour:
            visit(name, [name])
    assert cycles == []


@cache
def heavy_modules() -> frozenset[str]:
    """Core modules whose import loads a heavy dependency, through any chain of module-level imports."""
    heavy: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, path in core_modules().items():
            if name in heavy:
                continue
            targets = [target for _, target in imports(path, module_level=True)]
            if any(t.split(".")[0] in HEAVY or t in heavy for t in targets):
                heavy.add(name)
                changed = True
    return frozenset(heavy)


def test_imports_inside_functions_are_only_for_heavy_dependencies():
    """An import inside a function costs a reader a search and hides a dependency; it is worth it
    only to keep TensorFlow, JAX, Ray or Optuna out of a process that does not use them."""
    hidden = []
    for name, path in core_modules().items():
        for statement, target in imports(path, module_level=False):
            top = target.split(".")[0]
            if top == "core":
                ok = target in heavy_modules() or target not in core_modules()   # `from m import name`
                ok = ok or (isinstance(statement, ast.ImportFrom) and statement.module in heavy_modules())
            else:
                ok = top in HEAVY or target.startswith(("numpy._core", "numpy.core"))  # numpy 1/2 compat
            if not ok and (str(path.relative_to(ROOT)), statement.module) not in REACHES_UP:
                hidden.append(f"{path.relative_to(ROOT)}:{statement.lineno}: {ast.unparse(statement)}")
    assert sorted(set(hidden)) == []


def test_core_never_imports_streamlit_or_plotly():
    found = [f"{path.relative_to(ROOT)}: {target}" for path in core_modules().values()
             for module_level in (True, False) for _, target in imports(path, module_level=module_level)
             if target.split(".")[0] in ("streamlit", "plotly")]
    assert found == []


def test_no_function_is_longer_than_80_lines():
    long = []
    for folder in ("core", "dashboard", "pages"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(tree(path)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > LONGEST_FUNCTION:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert long == []


def test_pages_never_ask_which_executor_trains():
    """The scheduler hides where runs train; pages ask JobManager's questions (trains_here, problem,
    where_runs_train) instead of importing executors or reading `manager.executor`. (The dashboard's
    status panel may read a run's own words for where it trained: core.jobs.executors.where_trained.)"""
    found = []
    for folder in ("pages", "dashboard"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            code = path.read_text(encoding="utf-8")
            if re.search(r"\.executor\b", code) or (folder == "pages" and "core.jobs.executors" in code):
                found.append(str(path.relative_to(ROOT)))
    assert found == []


def docstrings(module: ast.Module) -> set[int]:
    return {id(node.body[0].value) for node in ast.walk(module)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}


def test_no_module_outside_the_store_names_a_run_state_as_a_literal():
    """Run states are RunState members outside core/store/: a renamed or added state is then one
    edit and a search. Words that only look like a state are listed in NOT_RUN_STATES, with why."""
    words = set(STATES)
    found = []
    for folder in ("core", "dashboard", "pages"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            if where.startswith("core/store/"):
                continue
            skip = docstrings(tree(path))
            for node in ast.walk(tree(path)):
                if (isinstance(node, ast.Constant) and node.value in words and id(node) not in skip
                        and (where, node.value) not in NOT_RUN_STATES):
                    found.append(f"{where}:{node.lineno}: {node.value!r}")
    assert found == []


def test_the_layout_in_core_init_names_every_package():
    """core/__init__.py's picture is the map a newcomer reads first: it must not miss a package."""
    picture = (CORE / "__init__.py").read_text(encoding="utf-8")
    packages = sorted(p.name for p in CORE.iterdir() if (p / "__init__.py").is_file())
    assert [p for p in packages if f"{p}/" not in picture] == []
