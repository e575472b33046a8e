"""pydags' modules form layers: no module imports, even lazily or for a type checker, one
that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import pydags

PACKAGE = Path(pydags.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> nx.DiGraph:
    """Module -> the pydags modules it names in any import statement, anywhere in it."""
    graph = nx.DiGraph()
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    for name, path in modules.items():
        graph.add_node(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{anchor}.{base}" if base else anchor
                # ``from pydags.executors import pool`` names a module; ``from x import f`` names x
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                # importing a submodule runs its packages' __init__ too, but pydags' packages
                # import nothing of their own but what they re-export: the edge is to the module
                if target and target != name:
                    graph.add_edge(name, target)
    return graph


def test_the_import_graph_sees_lazy_and_type_checking_imports():
    graph = imports()
    assert graph.has_edge("pydags.pipeline", "pydags.stage")
    assert len(graph) > 30


def test_no_module_imports_one_that_imports_it_back():
    graph = imports()
    cycles = [c for c in nx.simple_cycles(graph) if "pydags" not in c or len(c) > 1]
    shown = ["  " + " -> ".join([*c, c[0]]) for c in sorted(cycles, key=len)[:20]]
    assert not cycles, f"{len(cycles)} import cycles:\n" + "\n".join(shown)


def test_no_module_is_longer_than_450_lines():
    lengths = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines())
               for p in PACKAGE.rglob("*.py")}
    assert max(lengths.values()) > 200  # the walk found the modules
    assert {name: n for name, n in lengths.items() if n > 450} == {}
