"""The import graph of the installed packages: layers point one way, nothing is circular.

``hailuo`` (the core, no Prefect) <- ``prefect_hailuo.defaults`` (shared names) <- blocks
<- tasks <- flows <- deployments <- cli <- ``prefect_hailuo`` (the public API).

The packages are found the way Python finds them (``importlib.util.find_spec``), so the
check follows the build's package mapping (``flows/`` is ``prefect_hailuo.flows``) for an
editable and a normal install alike. Every ``import`` counts, also those inside functions
(a lazy import is still a dependency); only ``if TYPE_CHECKING:`` blocks are skipped.
"""

from __future__ import annotations

import ast
import importlib.util
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"][
    "setuptools"]["packages"]

#: (module prefix, rank): a module may import only modules of its own rank or lower
RANKS: list[tuple[str, int]] = [
    ("hailuo", 0),
    ("prefect_hailuo.defaults", 1),
    ("prefect_hailuo.blocks", 2),
    ("prefect_hailuo.tasks", 3),
    ("prefect_hailuo.flows", 4),
    ("prefect_hailuo.examples", 4),
    ("prefect_hailuo.deployments", 5),
    ("prefect_hailuo.scaffold", 6),
    ("prefect_hailuo.cli", 6),
    ("prefect_hailuo", 7),
]


def rank(module: str) -> int:
    for prefix, value in RANKS:
        if module == prefix or module.startswith(prefix + "."):
            return value
    raise AssertionError(f"{module} has no layer: add it to RANKS in {__file__}")


def project_modules() -> dict[str, Path]:
    """Every module of the installed packages, by dotted name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations, package
        for folder in spec.submodule_search_locations:
            for path in Path(folder).glob("*.py"):
                name = package if path.stem == "__init__" else f"{package}.{path.stem}"
                found[name] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules (and ``prefect``) that ``name`` imports anywhere in its body."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    targets: set[str] = set()

    def target(module: str) -> str | None:
        if module in known:
            return module
        if module == "prefect" or module.startswith("prefect."):
            return "prefect"
        return None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (hit := target(alias.name)) is not None:
                    targets.add(hit)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                hit = target(sub) if sub in known else target(base)
                if hit is not None:
                    targets.add(hit)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    targets.discard(name)
    return targets


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def test_every_installed_module_has_a_layer():
    modules = project_modules()
    assert "prefect_hailuo.flows.generation" in modules  # the mapping is followed
    assert "hailuo.client" in modules
    for name in modules:
        rank(name)


def test_the_core_never_imports_prefect_or_the_prefect_layer():
    offenders = {name: sorted(t for t in targets if t == "prefect" or rank(t) > 0)
                 for name, targets in graph().items() if rank(name) == 0}
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_imports_point_down_the_layers_only():
    upward = {name: sorted(t for t in targets if t != "prefect" and rank(t) > rank(name))
              for name, targets in graph().items()}
    assert not {k: v for k, v in upward.items() if v}, upward


def test_no_circular_imports():
    edges = {name: {t for t in targets if t != "prefect"} for name, targets in graph().items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            walk(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_a_lazy_upward_import(tmp_path):
    """The checker itself: an import inside a function counts, TYPE_CHECKING does not."""
    source = tmp_path / "mod.py"
    source.write_text("from typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from prefect_hailuo.flows import batch\n"
                      "def f():\n    from prefect_hailuo.tasks import generation\n"
                      "    import prefect.flows\n")
    known = {"prefect_hailuo.flows.batch", "prefect_hailuo.tasks.generation",
             "prefect_hailuo.tasks", "prefect_hailuo.flows"}
    assert imports_of("hailuo.mod", source, known) == {"prefect_hailuo.tasks.generation",
                                                       "prefect"}
