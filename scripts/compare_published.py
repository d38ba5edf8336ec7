#!/usr/bin/env python3
"""Print our analytic MACs/params next to the published MobileNet tables.

    .venv/bin/python scripts/compare_published.py [../shared/reference/mobilenet-tables.md]

Params are counted after batch-norm folding with the 1001-class head, as the published tables count them.
"""

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mnetdeploy.arch.published import compare_file

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "mobilenet-tables.md"


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    if not path.is_file():
        print(f"error: {path}: reference tables not found", file=sys.stderr)
        return 2
    table = Table(title=f"Analytic counts vs {path.name} (params after BN folding, 1001 classes)")
    for col in ("model", "MACs pub (M)", "MACs ours (M)", "err", "params pub (M)", "params ours (M)", "err",
                "source", "ok"):
        table.add_column(col, justify="left" if col in ("model", "source") else "right")
    notes = {}
    for c in compare_file(path):
        r = c.row
        tolerance = 0.03 if r.arch.startswith("v3") else 0.01
        ok = c.macs_within(rel=tolerance) and (c.params_error is None or abs(c.params_error) <= tolerance)
        mark = "yes" if ok else "no"
        if c.note and not ok:
            notes.setdefault(c.note, len(notes) + 1)
            mark = f"erratum [{notes[c.note]}]"
        table.add_row(f"{r.arch} {r.alpha:g}/{r.resolution}", f"{r.macs_m:g}", f"{c.macs_m:.1f}",
                      f"{c.macs_error:+.2%}", "-" if r.params_m is None else f"{r.params_m:g}",
                      f"{c.params_m:.3f}", "-" if c.params_error is None else f"{c.params_error:+.2%}",
                      r.source, mark)
    console = Console(width=180)
    console.print(table)
    console.print("MACs: within 1 % or 1 M; params: within 1 % (v1, v2), 3 % (v3).")
    for note, n in notes.items():
        console.print(f"[{n}] {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
