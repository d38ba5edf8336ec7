"""The per-operator tables `benchmark_model --enable_op_profiling=true` (or LiteRT's `--use_profiler`) prints.

Each table is a title line (`==== Run Order ====`), a tab-separated header of bracketed column names, then one
tab-separated row per node. The column set varies: TF 2.x has `[start]`, LiteRT's CompiledModel benchmark
does not, so columns are found by name, never by position. A run can print two profiles, one for interpreter
initialization and one for the regular runs; the regular runs' table is the one that describes inference.
"""

from __future__ import annotations

import dataclasses
import re

_TITLE = re.compile(r"^=+ (?P<title>.+?) =+$")


@dataclasses.dataclass(frozen=True)
class OpProfileRow:
    """One node of the "Run Order" table. Times in milliseconds, shares in percent of the run."""

    node_type: str
    name: str
    avg_ms: float
    percent: float
    first_ms: float | None = None
    start_ms: float | None = None
    cdf_percent: float | None = None
    mem_kb: float | None = None
    times_called: int | None = None


def _number(cell: str) -> float:
    return float(cell.strip().rstrip("%"))


def _row(header: list[str], cells: list[str]) -> OpProfileRow | None:
    values = dict(zip(header, cells))
    try:
        return OpProfileRow(
            node_type=values["node type"],
            name=values.get("name", ""),
            avg_ms=_number(values["avg ms"]),
            percent=_number(values["%"]),
            first_ms=_number(values["first"]) if "first" in values else None,
            start_ms=_number(values["start"]) if "start" in values else None,
            cdf_percent=_number(values["cdf%"]) if "cdf%" in values else None,
            mem_kb=_number(values["mem kb"]) if "mem kb" in values else None,
            times_called=int(_number(values["times called"])) if "times called" in values else None,
        )
    except (KeyError, ValueError):
        return None


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.split("\t")[1:]]  # rows start with a tab


def parse_op_profile(lines: list[str]) -> list[OpProfileRow] | None:
    """Rows of the regular runs' "Run Order" table, or None if the lines hold no such table.

    `lines` are the tool's lines with any log prefix removed but leading tabs kept."""
    tables: list[tuple[str, list[OpProfileRow]]] = []   # (section, rows) of every Run Order table, in order
    section = ""
    i = 0
    while i < len(lines):
        text = lines[i].strip()
        if text.endswith("Profiling Info for Benchmark Initialization:"):
            section = "init"
        elif "Profiling Info for Regular Benchmark Runs" in text:
            section = "runs"
        title = _TITLE.match(text)
        if title and i + 1 < len(lines) and "[node type]" in lines[i + 1].lower():
            header = [cell.strip("[]").lower() for cell in _cells(lines[i + 1])]
            rows: list[OpProfileRow] = []
            i += 2
            while i < len(lines) and lines[i].startswith("\t"):
                row = _row(header, _cells(lines[i]))
                if row is not None:
                    rows.append(row)
                i += 1
            if title.group("title") == "Run Order" and rows:
                tables.append((section, rows))
            continue
        i += 1
    if not tables:
        return None
    for section_name, rows in reversed(tables):
        if section_name == "runs":
            return rows
    return tables[-1][1]
