"""The repository's shape: no import cycles in the library, nothing outside tests imports them,
modules a reader can take in one sitting.

Read from the source with ``ast`` (nothing is imported), so a cycle hidden inside a function
(an import that runs only when it is called) counts too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGE = "torch_cnn"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
LONG_REASON = "# long:"  # a comment on the def line or just above it says why a function is long
# Code that users or scripts run: none of it may import a test module.
NON_TEST_TREES = ("torch_cnn", "keras_ref", "scripts", "benchmarks", "examples")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _library_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _imports(path: Path) -> Iterator[tuple[str, list[str]]]:
    """``(module, names)`` for every import statement, at any depth (function bodies too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, [alias.name for alias in node.names]


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Edges ``a → b`` when importing ``a`` runs ``b``.

    ``from pkg import name`` imports ``pkg.name`` when that is a module, else ``pkg`` itself
    (its ``__init__``). Importing ``x.y.z`` also runs the packages ``x`` and ``x.y``, except
    those that contain the importing module (they are already being imported).
    """
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        if _is_package(name, modules):
            own.add(name)
        for target, names in _imports(path):
            if target.split(".")[0] != PACKAGE:
                continue
            explicit = {f"{target}.{n}" for n in names if f"{target}.{n}" in modules}
            if not names or len(explicit) < len(names):
                explicit.add(target)  # a name defined in target (or `import target`)
            for module in explicit:
                parts = module.split(".")
                parents = {".".join(parts[:i]) for i in range(1, len(parts))} - own
                graph[name] |= {m for m in {module, *parents} if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_library_has_no_import_cycle() -> None:
    modules = _library_modules()
    assert len(modules) > 20
    assert find_cycle(import_graph(modules)) is None


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    """The check can fail: a module importing its package's ``__init__``, which imports it."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from torch_cnn.sub import leaf\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "leaf.py").write_text("def f():\n    from torch_cnn import __version__\n")
    modules = {
        "torch_cnn": pkg / "__init__.py",
        "torch_cnn.sub": pkg / "sub" / "__init__.py",
        "torch_cnn.sub.leaf": pkg / "sub" / "leaf.py",
    }
    assert find_cycle(import_graph(modules)) == ["torch_cnn", "torch_cnn.sub.leaf", "torch_cnn"]
    (pkg / "sub" / "leaf.py").write_text("from torch_cnn.sub import other\n")
    assert find_cycle(import_graph(modules)) is None  # its own package: already importing


@pytest.mark.parametrize("tree", NON_TEST_TREES)
def test_nothing_outside_the_tests_imports_them(tree: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted((ROOT / tree).rglob("*.py"))
        for module, _ in _imports(path)
        if module.split(".")[0] in ("tests", "parity_tests")
    ]
    assert offenders == []


def test_no_test_imports_another_test_module() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for tree in ("tests", "parity_tests")
        for path in sorted((ROOT / tree).rglob("*.py"))
        for module, names in _imports(path)
        if module.split(".")[-1].startswith("test_")
        or any(n.startswith("test_") and module in ("tests", "parity_tests") for n in names)
    ]
    assert offenders == []


def _long_functions(path: Path) -> Iterator[str]:
    lines = path.read_text().splitlines()
    for node in ast.walk(ast.parse("\n".join(lines), str(path))):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body
        has_doc = isinstance(body[0], ast.Expr) and isinstance(
            getattr(body[0], "value", None), ast.Constant
        )
        start = body[1].lineno if has_doc and len(body) > 1 else body[0].lineno
        length = (node.end_lineno or start) - start + 1
        first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        around = " ".join(lines[max(first - 2, 0) : node.lineno])
        if length > MAX_FUNCTION_LINES and LONG_REASON not in around:
            yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)"


def test_modules_and_functions_are_readable_in_one_sitting() -> None:
    """No library module over ~600 lines; no function over ~80 without a stated reason."""
    paths = sorted((ROOT / PACKAGE).rglob("*.py"))
    big = [
        f"{p.relative_to(ROOT)} ({n} lines)"
        for p in paths
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert big == []
    trees = [ROOT / t for t in NON_TEST_TREES if (ROOT / t).is_dir()]
    long = [f for tree in trees for p in sorted(tree.rglob("*.py")) for f in _long_functions(p)]
    assert long == []
