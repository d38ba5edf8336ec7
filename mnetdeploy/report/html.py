"""report.html / comparison.html: one self-contained page (inline CSS and SVG plots; no JS, no external
fonts, images or stylesheets), readable on screen and printable. Every string from the report is escaped."""

from __future__ import annotations

import html
import re

from mnetdeploy.report import plots
from mnetdeploy.report.render import (
    Cell,
    Section,
    Table,
    comparison_rows,
    comparison_sections,
    header_facts,
    labels_for,
    latency_section,
    model_line,
    sections,
    title,
)

CSS = """
:root { --fg: #1b1f24; --muted: #57606a; --line: #d8dee4; --head: #f3f5f7; --warn-bg: #fff8e1;
        --warn-line: #e3b341; --code: #eef1f4; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff; font: 14px/1.45 "DejaVu Sans", system-ui, -apple-system,
       "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 32px 56px; }
h1 { font-size: 26px; margin: 0 0 2px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 16px; margin: 24px 0 8px; }
.sub { color: var(--muted); margin: 0 0 14px; font-size: 15px; }
nav { margin: 10px 0 4px; font-size: 13px; color: var(--muted); }
nav a { color: #0b5cad; text-decoration: none; margin-right: 14px; }
dl.facts { display: grid; grid-template-columns: max-content minmax(0, 1fr) max-content minmax(0, 1fr);
           gap: 3px 16px; margin: 8px 0 0; font-size: 13px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 8px; }
th, td { padding: 5px 8px; text-align: left; white-space: nowrap; border-bottom: 1px solid var(--line); }
th { background: var(--head); font-weight: 600; border-bottom: 2px solid #c4ccd4; white-space: normal;
     vertical-align: bottom; min-width: 3.5em; }  /* long headers wrap; numbers never do */
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.prose { white-space: normal; overflow-wrap: anywhere; min-width: 14em; }  /* long text wraps, in readable lines */
tbody tr:nth-child(even) td { background: #fafbfc; }
td[title] { text-decoration: underline dotted #9aa4ae; text-underline-offset: 3px; }
p.note { color: var(--muted); font-size: 12.5px; margin: 4px 0; }
.missing { background: var(--warn-bg); border: 1px solid var(--warn-line); border-radius: 6px; padding: 8px 12px;
           margin: 6px 0; }
ul.warnings { margin: 6px 0; padding-left: 0; list-style: none; }
ul.warnings li { background: var(--warn-bg); border-left: 4px solid var(--warn-line); padding: 5px 10px;
                 margin: 4px 0; }
code { font-family: "DejaVu Sans Mono", ui-monospace, Menlo, Consolas, monospace; font-size: 12px;
       background: var(--code); padding: 1px 4px; border-radius: 4px; overflow-wrap: anywhere; }
figure { margin: 10px 0 18px; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 2px; }
section.model { margin-top: 44px; border-top: 3px solid var(--fg); padding-top: 6px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
@media (max-width: 800px) { dl.facts { grid-template-columns: max-content minmax(0, 1fr); } main { padding: 16px; } }
@media print {
  body { font-size: 11px; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  .table-wrap { overflow: visible; }
  table { font-size: 10px; }
  th, td { padding: 3px 6px; }
  h2, h3 { break-after: avoid; }
  table, figure, .missing, ul.warnings li { break-inside: avoid; }
  section.model { break-before: page; }
}
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def inline(text: str) -> str:
    """Escaped text whose `backticked` parts become <code>."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: keep it literal
        return esc(text)
    return "".join(f"<code>{esc(p)}</code>" if i % 2 else esc(p) for i, p in enumerate(parts))


# A text cell longer than this makes its column prose: it may wrap. Shorter text (names, labels, hashes) and every
# number stay on one line, so a table only grows taller where a sentence or a long path would otherwise push it
# wider than the page (the .table-wrap would then scroll sideways and hide the right-hand columns).
PROSE_CHARS = 30


def _td(cell: Cell, cls: str = "", tag: str = "td") -> str:
    attr = f' class="{cls}"' if cls else ""
    tip = f' title="{esc(cell.title)}"' if cell.title else ""
    text = _breakable(cell.text) if cls == "prose" else esc(cell.text)
    return f"<{tag}{attr}{tip}>{text}</{tag}>"


def _breakable(text: str) -> str:
    """Escaped text that may also break after / and _: a long path or file name wraps at a separator
    (model_int8_ | per_channel.tflite), not at whatever letter reaches the column's edge."""
    return re.sub(r"([/_])", r"\1<wbr>", esc(text))


def column_classes(table: Table) -> list[str]:
    """Per column: "num" (right-aligned, never wraps), "prose" (may wrap) or "" (text that never wraps)."""
    return ["num" if numeric else "prose" if any(len(row[i].text) > PROSE_CHARS for row in table.rows) else ""
            for i, numeric in enumerate(table.numeric)]


def table_html(table: Table) -> str:
    classes = column_classes(table)
    head = "".join(_td(Cell(c), cls, "th") for c, cls in zip(table.columns, classes))
    body = "".join("<tr>" + "".join(_td(c, cls) for c, cls in zip(row, classes)) + "</tr>\n"
                   for row in table.rows)
    return f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table></div>'


def section_html(section: Section, level: int, prefix: str) -> str:
    parts = [f'<section id="{esc(prefix + section.key)}"><h{level}>{esc(section.title)}</h{level}>']
    if section.missing:
        parts.append(f'<p class="missing">{inline(section.missing)}</p>')
    if section.table:
        parts.append(table_html(section.table))
    parts += [f'<p class="note">{inline(n)}</p>' for n in section.notes]
    if section.bullets:
        parts.append('<ul class="warnings">' + "".join(f"<li>{inline(b)}</li>" for b in section.bullets) + "</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def facts_html(report: dict) -> str:
    # The model line is already the page's subtitle.
    items = "".join(f"<dt>{esc(label)}</dt>{_td(value, tag='dd')}" for label, value in header_facts(report)
                    if label != "model")
    return f'<dl class="facts">{items}</dl>'


def figure_html(svg: str | None, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>" if svg else ""


def plots_html(report: dict, level: int, prefix: str) -> str:
    latency = plots.latency_distribution_svg(report, salt=f"{prefix}latency")
    tradeoff = plots.tradeoff_svg(report, salt=f"{prefix}tradeoff")
    parts = [f'<section id="{esc(prefix)}plots"><h{level}>Plots</h{level}>']
    if latency is None and tradeoff is None:
        parts.append(f'<p class="missing">{inline(latency_section(report).missing or "not measured")}</p>')
    parts.append(figure_html(latency, "Latency distribution per model file, grouped by threads: every measured run "
                                  "(dots) with its quartiles (box) and median (line)."))
    parts.append(figure_html(tradeoff, "Size vs latency vs accuracy: x = p50 latency, y = top-1 when measured for "
                                   "every file (otherwise size), marker area = file size."))
    parts.append("</section>")
    return "\n".join(parts)


def model_html(report: dict, level: int, prefix: str, heading: str | None = None) -> str:
    secs = sections(report)
    keys = [(s.key, s.title) for s in secs]
    keys.insert(next(i for i, (k, _) in enumerate(keys) if k == "latency") + 1, ("plots", "Plots"))
    nav = "".join(f'<a href="#{esc(prefix + k)}">{esc(t)}</a>' for k, t in keys)
    parts = [f"<h{level}>{esc(heading or title(report))}</h{level}>",
             f'<p class="sub">{esc(model_line(report))}</p>', facts_html(report), f"<nav>{nav}</nav>"]
    for s in secs:
        parts.append(section_html(s, level + 1, prefix))
        if s.key == "latency":
            parts.append(plots_html(report, level + 1, prefix))
    return "\n".join(parts)


def page(title_text: str, body: str, footer: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title_text)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n"
            f"<footer>{inline(footer)}</footer>\n</main>\n</body>\n</html>\n")


def _footer(reports: list[dict]) -> str:
    r = reports[0]
    return (f"generated by mnetdeploy {r.get('tool_version', '?')} from report.json schema "
            f"{r.get('schema', '?')} v{r.get('schema_version', '?')}; re-render with `mnetdeploy report`")


def render_html(reports: list[dict]) -> str:
    """One report: its full page. Several: the side-by-side comparison first, then each model in full."""
    if not reports:
        raise ValueError("render_html needs at least one report")
    if len(reports) == 1:
        r = reports[0]
        return page(f"{title(r)} — mnetdeploy report", model_html(r, 1, ""), _footer(reports))
    labels = labels_for(reports)
    nav = "".join(f'<a href="#m{i}">{esc(label)}</a>' for i, label in enumerate(labels))
    parts = [f"<h1>Comparison of {len(reports)} models</h1>",
             f'<p class="sub">{esc(", ".join(labels))}</p>', f"<nav>{nav}</nav>"]
    for s in comparison_sections(reports, labels):
        parts.append(section_html(s, 2, "cmp-"))
        if s.key == "tradeoff":
            svg = plots.comparison_svg(comparison_rows(reports, labels), salt="cmp")
            parts.append(figure_html(svg, "Speed / accuracy trade-off: x = p50 latency, y = top-1 when measured for "
                                      "every file (otherwise size); colour = model, marker = precision, "
                                      "area = file size."))
    for i, (label, r) in enumerate(zip(labels, reports)):
        parts.append(f'<section class="model" id="m{i}">{model_html(r, 2, f"m{i}-", heading=label)}</section>')
    return page(f"Comparison: {', '.join(labels)} — mnetdeploy", "\n".join(parts), _footer(reports))


# A check the tests use: nothing in a page may load from elsewhere (self-contained, works offline/printed).
EXTERNAL_REF = re.compile(r"""(?:src|href)\s*=\s*["'](?!#)|@import|url\(\s*["']?(?!#)""", re.I)
