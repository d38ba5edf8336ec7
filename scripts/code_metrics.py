"""Structure figures of the package for reviews: import cycles, private names used across modules, largest modules.

    .venv/bin/python scripts/code_metrics.py [--json]

Import edges are read statically (ast) from every `import`/`from ... import` in a module, at module level or
inside functions alike: an import moved into a function to dodge a cycle is still a dependency.
"""

from __future__ import annotations

import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mnetdeploy"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: dict[str, Path]) -> tuple[set[str], list[tuple[str, str]]]:
    """(package modules imported, [(module, private name)] taken from other modules)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    deps: set[str] = set()
    private: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mnetdeploy"):
                    deps.add(_existing(alias.name, known))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            if not base.startswith("mnetdeploy"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:
                    deps.add(sub)
                else:
                    deps.add(_existing(base, known))
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.append((base, alias.name))
    deps.discard(name)
    return deps, private


def _existing(dotted: str, known: dict[str, Path]) -> str:
    while dotted not in known and "." in dotted:
        dotted = dotted.rsplit(".", 1)[0]
    return dotted


def import_graph() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    known = modules()
    graph, private = {}, []
    for name, path in known.items():
        deps, priv = imports_of(name, path, known)
        # A package's own __init__ importing a submodule is not a cycle with that submodule's parent import.
        graph[name] = deps
        private.extend((name, mod, attr) for mod, attr in priv)
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package_edges(graph):
    """Edges between a package's __init__ and its own submodules are how packages re-export; not cycles."""
    return {m: {d for d in deps if not (d.startswith(m + ".") or m.startswith(d + ".") and
                                        modules()[d].name == "__init__.py")} for m, deps in graph.items()}


def main() -> None:
    graph, private = import_graph()
    comps = cycles(_package_edges(graph))
    sizes = sorted(((len(p.read_text().splitlines()), n) for n, p in modules().items()), reverse=True)
    figures = {"modules": len(graph), "import_cycles": comps,
               "private_names_across_modules": sorted({f"{a} <- {b}.{c}" for a, b, c in private}),
               "largest_modules": [{"module": n, "lines": k} for k, n in sizes[:8]]}
    if "--json" in sys.argv:
        print(json.dumps(figures, indent=2))
        return
    print(f"modules: {figures['modules']}")
    print(f"import cycles: {len(comps)}")
    for c in comps:
        print("  " + " <-> ".join(c))
    print(f"private names used across modules: {len(figures['private_names_across_modules'])}")
    for p in figures["private_names_across_modules"]:
        print("  " + p)
    print("largest modules:")
    for item in figures["largest_modules"]:
        print(f"  {item['lines']:5d}  {item['module']}")


if __name__ == "__main__":
    main()
