"""The sweep's renderings, all from sweep.json's content: sweep.md, sweep.html (self-contained, inline SVG) and
the console table. Reuses the report's table/page helpers and plot style so a sweep reads like a report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mnetdeploy.fsutil import write_text
from mnetdeploy.report.render import DASH, Section, fmt, fmt_millions, fmt_size, make_table

COLUMNS = [("alpha", True), ("res", True), ("precision", False), ("threads", True), ("device", False),
           ("params", True), ("MACs", True), ("size", True), ("p50 ms", True), ("p90 ms", True), ("top-1 %", True),
           ("frontier", False)]


def _cells(row: dict, best: bool) -> list:
    mark = ("★ recommended" if best else "") + (" ◆" if row["on_frontier"] else "")
    return [f"{row['alpha']:g}", str(row["resolution"]), row["precision"], str(row["threads"]), row["device"],
            fmt_millions(row["params"]), fmt_millions(row["macs"]), fmt_size(row["size_bytes"]),
            fmt(row["p50_ms"]), fmt(row["p90_ms"]), fmt(row["top1"], 1), mark.strip() or DASH]


def sections(state: dict) -> list[Section]:
    rows, rec = state.get("rows", []), state.get("recommendation", {})
    y = state.get("frontier", {}).get("y", "macs")
    grid = state["grid"]
    results = Section("results", "Results", make_table(COLUMNS, [_cells(r, i == rec.get("row"))
                                                                  for i, r in enumerate(rows)]))
    results.notes = [state["accuracy"]["note"],
                     f"◆ Pareto frontier per (device, threads): no other row is both faster and "
                     f"{'more accurate' if y == 'top1' else 'larger in MACs (capacity)'}."]
    timing = state.get("timing", {})
    if timing.get("pending"):
        results.missing = (f"{timing['pending']} grid point(s) not measured yet; rerun the same `mnetdeploy sweep` "
                           "command to resume")
    budgets = state.get("budgets", {})
    recommendation = Section("recommendation", "Recommendation")
    recommendation.notes = [f"budgets: {'; '.join(budgets.get('rules') or []) or 'none given'}"
                            + (f" (from `{budgets['source']}`)" if budgets.get("source") else ""),
                            rec.get("reason", "")]
    fit = Section("fit", "Latency vs MACs: p50 = a · MACs + b", make_table(
        [("precision", False), ("threads", True), ("device", False), ("a (ms per M MACs)", True), ("b (ms)", True),
         ("R²", True), ("points", True), ("mean residual by alpha", False),
         ("departures (> 25 % off the line)", False)],
        [[f["precision"], str(f["threads"]), f["device"], fmt(f["a_ms_per_mmac"], 5), fmt(f["b_ms"], 3),
          fmt(f["r2"], 3), str(f["n"]),
          ", ".join(f"{a}: {v:+.0f} %" for a, v in f.get("residual_pct_by_alpha", {}).items()) or DASH,
          "; ".join(f"{_label(rows[d['row']])} {d['residual_pct']:+.0f} %: {d['note']}" for d in f["departures"])
          or DASH] for f in state.get("fit", [])]))
    fit.notes = ["A family that follows its MACs is compute-bound; small, depthwise-heavy models sit above the "
                 "line because their depthwise layers move many bytes per MAC (memory-bound)."]
    t = state.get("timing", {})
    run = Section("run", "Run")
    run.notes = [f"grid: {grid['arch']} alpha {grid['alphas']} x res {grid['resolutions']} x {grid['precisions']} "
                 f"x threads {grid['threads']} on {', '.join(grid['devices'])}",
                 f"this invocation: {t.get('prepared_now', 0)} point(s) prepared in {t.get('prepare_seconds', 0)} s "
                 f"(jobs {t.get('jobs', 1)}), {t.get('benchmarked_now', 0)} benchmarked in "
                 f"{t.get('bench_seconds', 0)} s, wall {t.get('wall_seconds', 0)} s"]
    if state.get("outside_grid"):
        results.notes.append(state["outside_grid"])
    return [results, recommendation, fit, run]


def _label(row: dict) -> str:
    return f"{row['alpha']:g}/{row['resolution']} {row['precision']}"


# ------------------------------------------------------------------------------------------------- plots

def _groups(rows: list[dict]) -> dict[tuple, list[int]]:
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault((r["precision"], r["threads"], r["device"]), []).append(i)
    return groups


def _group_name(key: tuple, rows: list[dict]) -> str:
    several_threads = len({r["threads"] for r in rows}) > 1
    several_devices = len({r["device"] for r in rows}) > 1
    return key[0] + (f" {key[1]}thr" if several_threads else "") + (f" {key[2]}" if several_devices else "")


def macs_latency_svg(state: dict) -> str | None:
    """MACs vs p50 per precision with the fitted line; departures ringed in red."""
    rows = state.get("rows", [])
    if not rows:
        return None
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure

    from mnetdeploy.report.plots import OTHER_COLOR, PRECISION_COLORS, PRECISION_MARKERS, figure_svg, plot_style

    departed = {d["row"] for f in state.get("fit", []) for d in f["departures"]}
    fits = {(f["precision"], f["threads"], f["device"]): f for f in state.get("fit", [])}
    with matplotlib.rc_context(plot_style("sweep-macs")):
        fig = Figure(figsize=(9, 4.6), layout="constrained")
        ax = fig.subplots()
        for key, idx in _groups(rows).items():
            color = PRECISION_COLORS.get(key[0], OTHER_COLOR)
            x = np.array([rows[i]["macs"] / 1e6 for i in idx])
            y = np.array([rows[i]["p50_ms"] for i in idx])
            f = fits.get(key)
            label = _group_name(key, rows) + (f": {f['a_ms_per_mmac']:.4f} ms/M MACs, R² {f['r2']:.2f}" if f else "")
            ax.scatter(x, y, color=color, marker=PRECISION_MARKERS.get(key[0], "o"), s=36, alpha=0.8, zorder=3,
                       label=label)
            if f:
                xs = np.linspace(0, x.max() * 1.05, 50)
                ax.plot(xs, f["a_ms_per_mmac"] * xs + f["b_ms"], color=color, linewidth=1, alpha=0.6)
            ring = [i for i in idx if i in departed]
            if ring:
                ax.scatter([rows[i]["macs"] / 1e6 for i in ring], [rows[i]["p50_ms"] for i in ring], s=160,
                           facecolors="none", edgecolors="#d62728", linewidths=1.2, zorder=4)
        ax.set_xlabel("multiply-accumulates (millions)")
        ax.set_ylabel("p50 latency (ms)")
        ax.set_title("latency follows MACs? (lines: least-squares fit; red rings: > 25 % off the line)")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left", fontsize=8)
        return figure_svg(fig, "MACs vs p50 latency with a linear fit per precision")


def frontier_svg(state: dict, x_key: str = "p50_ms", salt: str = "sweep-frontier") -> str | None:
    """The trade-off scatter, frontier highlighted: x = p50 (or MACs: the paper's MACs-vs-accuracy figure),
    y = top-1 when measured, else MACs. Frontier points are labelled and joined per (device, threads)."""
    rows = state.get("rows", [])
    y_key = state.get("frontier", {}).get("y", "macs")
    if not rows or (x_key == "macs" and y_key != "top1"):
        return None
    import matplotlib
    from matplotlib.figure import Figure

    from mnetdeploy.report.labels import label_points
    from mnetdeploy.report.plots import OTHER_COLOR, PRECISION_COLORS, PRECISION_MARKERS, figure_svg, plot_style

    def value(r: dict, k: str) -> float:
        return r[k] / 1e6 if k == "macs" else r[k]

    front = set(state.get("frontier", {}).get("rows", []))
    best = state.get("recommendation", {}).get("row")
    with matplotlib.rc_context(plot_style(salt)):
        fig = Figure(figsize=(9, 4.8), layout="constrained")
        ax = fig.subplots()
        for i, r in enumerate(rows):
            on = i in front
            ax.scatter([value(r, x_key)], [value(r, y_key)], s=70 if on else 30,
                       color=PRECISION_COLORS.get(r["precision"], OTHER_COLOR),
                       marker=PRECISION_MARKERS.get(r["precision"], "o"), alpha=0.9 if on else 0.3,
                       edgecolors="black" if on else "none", linewidths=0.8, zorder=3 if on else 2)
        if x_key == "p50_ms":
            lines: dict[tuple, list[dict]] = {}
            for i in sorted(front, key=lambda i: rows[i]["p50_ms"]):
                lines.setdefault((rows[i]["device"], rows[i]["threads"]), []).append(rows[i])
            for group in lines.values():
                ax.step([value(r, x_key) for r in group], [value(r, y_key) for r in group], where="post",
                        color="black", linewidth=1, alpha=0.6, zorder=2)
        from matplotlib.artist import Artist
        from matplotlib.lines import Line2D

        precisions = dict.fromkeys(r["precision"] for r in rows)
        handles: list[Artist] = [Line2D([], [], marker=PRECISION_MARKERS.get(p, "o"), linestyle="", label=p,
                          color=PRECISION_COLORS.get(p, OTHER_COLOR)) for p in precisions]
        if best is not None:
            r = rows[best]
            handles.append(ax.scatter([value(r, x_key)], [value(r, y_key)], s=260, marker="*", color="gold",
                                      edgecolors="black", linewidths=0.8, zorder=5, label="recommended"))
        ax.legend(handles=handles, loc="best", fontsize=8)  # a fixed corner can hide points; labels avoid it
        if x_key == "macs":
            ax.set_xscale("log")
        ax.set_xlabel("multiply-accumulates (millions, log)" if x_key == "macs"
                      else "p50 latency (ms) — left is faster")
        ax.set_ylabel("top-1 (%)" if y_key == "top1" else "multiply-accumulates (millions) — capacity")
        ax.set_title(("MACs vs accuracy" if x_key == "macs" else "latency vs " +
                      ("accuracy" if y_key == "top1" else "MACs")) + " — Pareto frontier in bold")
        labelled = front | ({best} if best is not None else set())
        label_points(fig, ax, [(value(rows[i], x_key), value(rows[i], y_key), _label(rows[i]), 5.0)
                                for i in sorted(labelled)])
        return figure_svg(fig, "sweep trade-off with the Pareto frontier")


# ----------------------------------------------------------------------------------------------- outputs

def sweep_markdown(state: dict) -> str:
    from mnetdeploy.report.markdown import section_lines

    lines = [f"# Sweep: {state['grid']['arch']}", ""]
    for s in sections(state):
        lines += section_lines(s, 2)
    return "\n".join(lines).rstrip() + "\n"


def sweep_html(state: dict) -> str:
    from mnetdeploy.report.html import esc, figure_html, page, section_html

    secs = sections(state)
    grid = state["grid"]
    parts = [f"<h1>Sweep: {esc(grid['arch'])}, {len(state.get('rows', []))} measured rows</h1>",
             f'<p class="sub">{esc(state["accuracy"]["note"])}</p>']
    for s in secs:
        parts.append(section_html(s, 2, "sweep-"))
        if s.key == "results":
            parts.append(figure_html(frontier_svg(state), "Latency vs accuracy (or MACs without accuracy); bold: the "
                                                      "Pareto frontier, star: the recommendation."))
            parts.append(figure_html(frontier_svg(state, "macs", "sweep-paper"), "MACs vs accuracy, as in the "
                                                                             "MobileNet papers."))
        if s.key == "fit":
            parts.append(figure_html(macs_latency_svg(state),
                                     "MACs vs p50 latency with the fitted line per precision."))
    return page(f"Sweep {grid['arch']} — mnetdeploy", "\n".join(parts),
                f"generated by mnetdeploy {state.get('tool_version', '?')} from `sweep.json` "
                f"(schema {state['schema']} v{state['schema_version']})")


def write_outputs(out: Path, state: dict) -> None:
    write_text(out / "sweep.md", sweep_markdown(state))
    write_text(out / "sweep.html", sweep_html(state))


def console_table(state: dict) -> Any:
    from rich import box
    from rich.table import Table

    rows, best = state.get("rows", []), state.get("recommendation", {}).get("row")
    table = Table(title=f"sweep {state['grid']['arch']}: ◆ frontier, ★ recommended", box=box.SIMPLE_HEAD,
                  header_style="bold", pad_edge=False)
    for name, numeric in COLUMNS:
        table.add_column(name, justify="right" if numeric else "left", no_wrap=True)
    for i, r in enumerate(rows):
        table.add_row(*[c if isinstance(c, str) else c.text for c in _cells(r, i == best)])
    return table
