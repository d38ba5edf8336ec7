"""report.md / comparison.md: GitHub-flavoured Markdown of the sections in render.py (no plots: GitHub drops
inline images, so the Markdown points at report.html for them)."""

from __future__ import annotations

from mnetdeploy.report.render import Section, Table, comparison_sections, header_facts, labels_for, sections, title


def _cell(text: str) -> str:
    # A pipe would end the cell and a newline the row.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def table_lines(table: Table) -> list[str]:
    lines = ["| " + " | ".join(_cell(c) for c in table.columns) + " |",
             "|" + "|".join("---:" if num else ":---" for num in table.numeric) + "|"]
    lines += ["| " + " | ".join(_cell(c.text) for c in row) + " |" for row in table.rows]
    return lines


def section_lines(section: Section, level: int = 2) -> list[str]:
    lines = [f"{'#' * level} {section.title}", ""]
    if section.missing:
        lines += [f"> {section.missing}", ""]
    if section.table:
        lines += table_lines(section.table) + [""]
    for note in section.notes:
        lines += [note, ""]
    if section.bullets:
        lines += [f"- {b}" for b in section.bullets] + [""]
    return lines


def model_lines(report: dict, level: int = 1) -> list[str]:
    lines = [f"{'#' * level} {title(report)}", ""]
    lines += [f"- **{label}**: {value.text}" for label, value in header_facts(report)] + [""]
    for section in sections(report):
        lines += section_lines(section, level + 1)
    lines += ["Plots (latency distribution, size vs latency vs accuracy): see report.html.", ""]
    return lines


def render_markdown(report: dict) -> str:
    return "\n".join(model_lines(report)).rstrip() + "\n"


def render_comparison_markdown(reports: list[dict]) -> str:
    labels = labels_for(reports)
    lines = [f"# Comparison: {', '.join(labels)}", ""]
    lines += [f"- **{label}**: `{r.get('artifact_dir', '?')}` (report.md there has the details)"
              for label, r in zip(labels, reports)] + [""]
    for section in comparison_sections(reports, labels):
        lines += section_lines(section, 2)
    lines += ["Plot of the speed/accuracy trade-off: see comparison.html.", ""]
    return "\n".join(lines).rstrip() + "\n"
