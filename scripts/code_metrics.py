"""Structure figures of the package for reviews: import cycles, private names used across modules, largest modules.

    .venv/bin/python scripts/code_metrics.py [--json]

The import graph is mnetdeploy.source_graph's (every import, module level or inside a function).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mnetdeploy.source_graph import cycles, modules, private_imports  # noqa: E402


def main() -> None:
    sizes = sorted(((len(p.read_text().splitlines()), n) for n, p in modules().items()), reverse=True)
    figures = {"modules": len(modules()), "import_cycles": cycles(), "private_names_across_modules": private_imports(),
               "largest_modules": [{"module": n, "lines": k} for k, n in sizes[:8]]}
    if "--json" in sys.argv:
        print(json.dumps(figures, indent=2))
        return
    print(f"modules: {figures['modules']}")
    print(f"import cycles: {len(figures['import_cycles'])}")
    for c in figures["import_cycles"]:
        print("  " + " <-> ".join(c))
    print(f"private names used across modules: {len(figures['private_names_across_modules'])}")
    for p in figures["private_names_across_modules"]:
        print("  " + p)
    print("largest modules:")
    for item in figures["largest_modules"]:
        print(f"  {item['lines']:5d}  {item['module']}")


if __name__ == "__main__":
    main()
