"""No import cycles in the avsrctl package, function-level imports included.

A function-level import can hide a cycle from Python (the second module is imported only when the
function runs), but the two modules still depend on each other: one of them belongs below the
other. Type-only imports (under `if TYPE_CHECKING:`) never run and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import avsrctl

PACKAGE = Path(avsrctl.__file__).parent


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:`."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skipped


def imported_modules(source: str, name: str, modules: set[str], *, is_package: bool = False) -> set[str]:
    """The modules of `modules` that module `name` imports anywhere (module level or in a function).

    `from a.b import c` imports module a.b.c when there is one, else a.b (c is a name in it).
    """
    tree = ast.parse(source)
    skipped = _type_checking_only(tree)
    here = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                child = f"{base}.{a.name}"
                found.add(child if child in modules else base)
    return (found & modules) - {name}


def package_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(paths)
    return {
        name: imported_modules(p.read_text(encoding="utf-8"), name, modules, is_package=p.name == "__init__.py")
        for name, p in paths.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_checker_sees_function_level_imports_and_skips_type_only_ones():
    modules = {"avsrctl.a", "avsrctl.b", "avsrctl.data", "avsrctl.data.roi"}
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from avsrctl.a import A\n"
        "def f():\n    from avsrctl.b import g\n    from avsrctl.data import roi\n"
    )
    assert imported_modules(source, "avsrctl.c", modules) == {"avsrctl.b", "avsrctl.data.roi"}
    assert imported_modules("from . import roi\nfrom .. import a\n", "avsrctl.data.x", modules) == {
        "avsrctl.data.roi",
        "avsrctl.a",
    }
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycles():
    graph = package_graph()
    assert "avsrctl.pretrained" in graph["avsrctl.checkpoint"]  # the checker reads the real package
    assert cycles(graph) == []
