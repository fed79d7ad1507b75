"""No import cycle inside neurodata_cli, lazy imports included.

Every ``import``/``from`` statement anywhere in a module (function bodies and
``if TYPE_CHECKING:`` blocks too) is an edge; a cycle among them means two modules
cannot be read, tested or typed one without the other.
"""

from __future__ import annotations

import ast
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import neurodata_cli

PACKAGE = "neurodata_cli"
ROOT = Path(neurodata_cli.__file__).parent


def _compiled() -> set[str]:
    """Names of the package's compiled extension modules (they import nothing of ours)."""
    found = set()
    for suffix in (".c", *EXTENSION_SUFFIXES):  # the source tree holds the .c, an install the .so
        for path in ROOT.rglob("*" + suffix):
            parts = path.relative_to(ROOT.parent).parts
            found.add(".".join(parts[:-1] + (path.name[: -len(suffix)],)))
    return found


def _modules() -> dict[str, Path]:
    """Map each module name of the package to its source file."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _edges(name: str, path: Path, modules: dict[str, Path], compiled: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports, resolved to known module names."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import sub` runs pkg's __init__ and imports pkg.sub: both count (a
            # compiled submodule is a leaf). So a module beside a package's __init__ that
            # the __init__ imports takes its siblings by `from .sibling import name`.
            targets.add(mod)
            targets.update(f"{mod}.{alias.name}" for alias in node.names)
    out = set()
    for target in targets:
        # importing a.b.c runs a, a.b and a.b.c: the deepest known module stands for them
        while target and target not in modules and target not in compiled:
            target = target.rpartition(".")[0]
        if target.startswith(PACKAGE) and target != name and target not in compiled:
            out.add(target)
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_no_import_cycle() -> None:
    modules = _modules()
    compiled = _compiled()
    graph = {name: _edges(name, path, modules, compiled) for name, path in modules.items()}
    cycles = _cycles(graph)
    detail = "\n".join(
        " <-> ".join(c) + "\n    " + "\n    ".join(f"{a} -> {sorted(graph[a] & set(c))}" for a in c)
        for c in cycles
    )
    assert not cycles, "import cycles in neurodata_cli:\n" + detail
