"""Writing reports: report.json, report.md and report.html per model, comparison.md/.html for several.

    from mnetdeploy.report.write import write_report
    write_report("artifacts/v2_0.35_96")      # -> report.json, report.md, report.html in that directory

The content comes from collect.py (report.json from what the steps recorded), the renderings from
markdown.py and html.py (both drawn from render.py's sections); this module only decides what goes where.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mnetdeploy.artifacts import SUMMARY
from mnetdeploy.errors import UserError
from mnetdeploy.fsutil import write_json, write_text
from mnetdeploy.report.collect import REPORT_JSON, build_report, load_report
from mnetdeploy.report.html import render_html
from mnetdeploy.report.markdown import render_comparison_markdown, render_markdown


def render_files(report: dict, json_path: str | Path) -> list[Path]:
    """report.md and report.html next to `json_path` (same stem), from the report alone (no rebuild)."""
    json_path = Path(json_path)
    md, page = json_path.with_suffix(".md"), json_path.with_suffix(".html")
    write_text(md, render_markdown(report))
    write_text(page, render_html([report]))
    return [md, page]


def write_report(artifact_dir: str | Path) -> Path:
    """Assemble report.json from what the steps recorded in `artifact_dir` and write it with report.md and
    report.html (each atomically). Returns the path of report.json."""
    report = build_report(artifact_dir)
    path = Path(report["artifact_dir"]) / REPORT_JSON
    write_json(path, report)
    render_files(report, path)
    return path


def write_comparison(reports: list[dict], out_dir: str | Path) -> list[Path]:
    """comparison.md and comparison.html of several reports in `out_dir`."""
    out = Path(out_dir)
    md, page = out / "comparison.md", out / "comparison.html"
    write_text(md, render_comparison_markdown(reports))
    write_text(page, render_html(reports))
    return [md, page]


@dataclass
class Rendered:
    report: dict
    json_path: Path
    rebuilt: bool                   # assembled afresh from the artifact directory (else re-rendered from JSON)
    files: list[Path] = field(default_factory=list)


def gather_reports(targets: list[str | Path]) -> list[Rendered]:
    """The report of each target, in order, nothing written yet: an artifact directory is assembled afresh,
    a report.json (or a directory holding only one) is read as it is. Bad targets raise UserError before any
    file is written."""

    if not targets:
        raise UserError("report: no input; pass artifact directories or report.json files")
    out: list[Rendered] = []
    seen: set[Path] = set()
    for target in targets:
        path = Path(target)
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        if path.is_dir() and (path / SUMMARY).is_file():
            report = build_report(path)
            out.append(Rendered(report, Path(report["artifact_dir"]) / REPORT_JSON, True))
        elif path.is_dir() and (path / REPORT_JSON).is_file():
            out.append(Rendered(load_report(path / REPORT_JSON), path / REPORT_JSON, False))
        elif path.is_dir():
            raise UserError(f"{path}: not a mnetdeploy artifact directory (no {SUMMARY}) and no {REPORT_JSON}; "
                            "pass the directory `mnetdeploy build` printed, or a report.json")
        elif path.is_file():
            if path.suffix.lower() != ".json":
                raise UserError(f"{path}: expected an artifact directory or a report.json, not a "
                                f"{path.suffix or 'suffix-less'} file; pass its directory instead")
            out.append(Rendered(load_report(path), path, False))
        else:
            raise UserError(f"{path}: no such artifact directory or report.json")
    return out


def write_reports(targets: list[str | Path], out_dir: str | Path = "reports") -> tuple[list[Rendered], list[Path]]:
    """`mnetdeploy report`: (re)write report.json (assembled targets only), report.md and report.html per
    target; with several targets also comparison.md and comparison.html in `out_dir`."""

    items = gather_reports(targets)
    for item in items:
        if item.rebuilt:
            write_json(item.json_path, item.report)
            item.files.append(item.json_path)
        item.files += render_files(item.report, item.json_path)
    comparison = write_comparison([i.report for i in items], out_dir) if len(items) > 1 else []
    return items, comparison
