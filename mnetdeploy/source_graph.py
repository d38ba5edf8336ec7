"""The package's own import graph, read from its source (ast), and fingerprints of the code a step runs.

Every `import` / `from ... import` of a package module counts, at module level or inside a function: an import
moved into a function to stay cheap (TensorFlow) is still code the step runs. Uses:

- `code_fingerprint("mnetdeploy.build")`: part of a step's cache key. It hashes the syntax tree (comments and
  docstrings dropped) of every package module the step can reach, so a fixed typo in report code, or a comment
  anywhere, never re-runs a build or a quantization, while a changed exporter does.
- `cycles()`: import cycles (tests/test_layout.py keeps the package free of them; scripts/code_metrics.py).
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name


@functools.lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _resolve(dotted: str, known: dict[str, Path]) -> str:
    """The longest known module prefix of `dotted` (from x.y import name: name may be an attribute)."""
    while dotted not in known and "." in dotted:
        dotted = dotted.rsplit(".", 1)[0]
    return dotted


@functools.cache
def imports_of(name: str) -> frozenset[str]:
    """The package modules `name` imports (directly)."""
    known = modules()
    path = known[name]
    anchor = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    deps: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            deps.update(_resolve(a.name, known) for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                deps.add(sub if sub in known else _resolve(base, known))
    deps.discard(name)
    return frozenset(deps)


def import_graph() -> dict[str, frozenset[str]]:
    return {name: imports_of(name) for name in modules()}


def closure(*roots: str) -> set[str]:
    """Every package module importing `roots` can run: their imports, transitively, and the packages'
    __init__ modules (Python runs them on the way in)."""
    known = modules()
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in known)
        todo.extend(imports_of(name))
    return seen


def _code_digest(path: Path) -> str:
    """sha256 of the module's syntax tree without docstrings: comments and docs do not change behaviour."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            body[0] = ast.Pass()
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def code_fingerprint(*roots: str) -> str:
    """One hash of the code of every module `closure(*roots)` reaches."""
    known = modules()
    digest = hashlib.sha256()
    for name in sorted(closure(*roots)):
        digest.update(f"{name}:{_code_digest(known[name])}\n".encode())
    return digest.hexdigest()


def private_imports() -> list[str]:
    """`module <- other.name` for every private name (one leading underscore) imported from another module."""
    found = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PACKAGE:
                found += [f"{name} <- {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    return sorted(set(found))


def cycles(graph: dict[str, frozenset[str]] | None = None) -> list[list[str]]:
    """Import cycles: strongly connected groups of more than one module (Tarjan's algorithm). A package's
    __init__ re-exporting its own submodules is not counted (Python handles that order by design)."""
    graph = graph or import_graph()
    known = modules()

    def counts(module: str, dep: str) -> bool:
        is_own_package = known[dep].name == "__init__.py" and module.startswith(dep + ".")
        return not is_own_package and not dep.startswith(module + ".")

    edges = {m: sorted(d for d in deps if counts(m, d)) for m, deps in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found
