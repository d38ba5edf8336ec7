"""Report plots as inline SVG strings (matplotlib, imported here lazily: only rendering HTML pays for it).

SVG rather than PNG: sharp at any zoom and in print, text stays text (searchable), and the page stays one file.
Figures are made with `matplotlib.figure.Figure` directly, not pyplot: no global figure state and no GUI
backend, whatever MPLBACKEND says.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mnetdeploy.report.labels import label_points
from mnetdeploy.report.render import artifact_by_file, latency_rows, number, runtime_label, top1_by_file

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

PRECISION_COLORS = {"fp32": "#1f77b4", "fp16": "#17becf", "bf16": "#8c564b", "dynamic": "#ff7f0e",
                    "int16x8": "#9467bd", "int8": "#2ca02c"}
OTHER_COLOR = "#7f7f7f"
PRECISION_MARKERS = {"fp32": "o", "fp16": "D", "bf16": "P", "dynamic": "s", "int16x8": "v", "int8": "^"}
MODEL_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
                "#bcbd22", "#7f7f7f"]


def plot_style(salt: str) -> dict[RcKeyType, Any]:
    # A distinct hash salt per figure keeps the clip-path ids of several SVGs on one page from colliding.
    return {"svg.fonttype": "none", "svg.hashsalt": salt, "font.family": "DejaVu Sans", "font.size": 9,
            "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
            "axes.titlesize": 10, "axes.titleweight": "bold", "axes.titlelocation": "left"}


def figure_svg(fig, description: str) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    match = re.match(r"<svg[^>]*>", text)
    assert match is not None  # text starts at "<svg" and matplotlib closes the tag
    tag = match.group(0)
    width = re.search(r'width="([\d.]+)pt"', tag)
    max_px = float(width.group(1)) * 4 / 3 if width else 900
    # Fixed pt sizes out, the viewBox stays: the plot scales to the page width (and to paper when printed).
    new_tag = re.sub(r'\s(width|height)="[^"]*"', "", tag).replace(
        "<svg", f'<svg role="img" aria-label="{_attr(description)}" '
                f'style="width:100%;max-width:{max_px:.0f}px;height:auto"', 1)
    return new_tag + text[len(tag):]


def _attr(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def _row_label(r: dict, runtimes: int, devices: int) -> str:
    label = Path(str(r.get("model"))).name
    extra = [runtime_label(r)] if runtimes > 1 else []
    extra += [str(r.get("device"))] if devices > 1 else []
    return f"{label} ({', '.join(extra)})" if extra else label


def _samples(r: dict) -> list[float]:
    values = r.get("samples_ms")
    return [float(x) for x in values if number(x) is not None] if isinstance(values, list) else []


def latency_distribution_svg(report: dict, salt: str = "latency") -> str | None:
    """Horizontal box plots of every measured run per model file, one panel per thread count, with the
    individual runs overlaid (20-50 runs are too few to show as a box alone). None: nothing to plot."""
    rows = [r for r in latency_rows(report) if _samples(r)]
    if not rows:
        return None
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure

    groups: dict[Any, list[dict]] = {}
    for r in rows:
        groups.setdefault(r.get("threads"), []).append(r)
    runtimes = len({runtime_label(r) for r in rows})
    devices = len({r.get("device") for r in rows})
    rng = np.random.default_rng(0)  # jitter only; fixed so the same report renders the same page
    with matplotlib.rc_context(plot_style(salt)):
        heights = [max(len(g), 1) * 0.5 + 0.7 for g in groups.values()]
        fig = Figure(figsize=(9, sum(heights) + 0.6), layout="constrained")
        axes = fig.subplots(len(groups), 1, sharex=True, squeeze=False,
                            gridspec_kw={"height_ratios": heights})[:, 0]
        for ax, (threads, group) in zip(axes, groups.items()):
            data = [np.array(_samples(r), dtype=float) for r in group]
            labels = [_row_label(r, runtimes, devices) for r in group]
            positions = np.arange(1, len(group) + 1)
            boxes = ax.boxplot(data, positions=positions, orientation="horizontal", tick_labels=labels,
                               widths=0.6, showfliers=False, patch_artist=True, medianprops={"color": "black"})
            for patch, r in zip(boxes["boxes"], group):
                patch.set_facecolor(PRECISION_COLORS.get(str(r.get("precision")), OTHER_COLOR))
                patch.set_alpha(0.35)
            for pos, values, r in zip(positions, data, group):
                color = PRECISION_COLORS.get(str(r.get("precision")), OTHER_COLOR)
                ax.scatter(values, pos + rng.uniform(-0.18, 0.18, len(values)), s=7, color=color, alpha=0.6,
                           linewidths=0, zorder=3)
            for i, (pos, r) in enumerate(zip(positions, group)):
                p50 = number(r["latency_ms"].get("p50"))
                if p50 is not None:  # next to the box's upper whisker, where the eye already is
                    whisker_end = float(boxes["whiskers"][2 * i + 1].get_xdata()[1])
                    ax.annotate(f"p50 {p50:.3f}", (whisker_end, pos), xytext=(6, 7),
                                textcoords="offset points", va="center", fontsize=8)
            ax.set_ylim(len(group) + 0.6, 0.4)  # first row on top, as in the table
            ax.grid(axis="y", visible=False)
            ax.set_title(f"{threads} thread{'s' if threads != 1 else ''}")
        every = np.concatenate([np.array(_samples(r), dtype=float) for r in rows])
        medians = [float(np.median(_samples(r))) for r in rows]
        # A busy machine leaves a few runs 10x slower than the median; on a linear axis they would squash
        # every box into a sliver at the left. Log scale keeps both the boxes and the stragglers readable.
        log = every.min() > 0 and every.max() > 4 * min(medians)
        for ax in axes:
            if log:
                from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

                ax.set_xscale("log")
                ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.xaxis.set_major_formatter(ScalarFormatter())
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.set_xlim(every.min() / 1.15, every.max() * 1.6)
            else:
                ax.set_xlim(0, every.max() * 1.18)
        axes[-1].set_xlabel("latency per inference (ms)" + (", log scale" if log else "") +
                            " — every measured run; box = quartiles, line = median")
        return figure_svg(fig, "latency distribution per model file")


def _size_mib(n: Any) -> float | None:
    v = number(n)
    return None if v is None else v / 1024 / 1024


def tradeoff_svg(report: dict, salt: str = "tradeoff") -> str | None:
    """Scatter: x = p50, y = top-1 when every point has one (else file size); marker area = file size."""
    files, accuracy = artifact_by_file(report), top1_by_file(report)
    points = []
    rows = latency_rows(report)
    several_threads = len({r.get("threads") for r in rows}) > 1
    for r in rows:
        name = Path(str(r.get("model"))).name
        p50 = number(r["latency_ms"].get("p50"))
        if p50 is None:
            continue
        label = f"{name} ({r.get('threads')} thr)" if several_threads else name
        points.append({"x": p50, "size": _size_mib((files.get(name) or {}).get("bytes")),
                       "top1": number((accuracy.get(name) or {}).get("top1")), "label": label,
                       "precision": str(r.get("precision"))})
    if not points:
        return None
    return _scatter(points, salt, "size vs latency vs accuracy", lambda p: PRECISION_COLORS.get(
        p["precision"], OTHER_COLOR), legend={k: v for k, v in PRECISION_COLORS.items()
                                               if k in {p["precision"] for p in points}})


def comparison_svg(rows: list[dict], salt: str = "comparison") -> str | None:
    """The speed/accuracy trade-off across models: colour = model, marker = precision, area = file size."""
    # Labels name the model and precision (colour alone is hard to map back); the table has the file names.
    points = [{"x": r["p50"], "size": _size_mib(r["bytes"]), "top1": r["top1"],
               "label": f"{r['label']} {r['precision']}", "show_size": False,
               "model": r["label"], "precision": str(r["precision"]), "threads": r["threads"]}
              for r in rows if r["p50"] is not None]
    if not points:
        return None
    if len({p["threads"] for p in points}) > 1:
        for p in points:
            p["label"] += f" ({p['threads']} thr)"
    models = list(dict.fromkeys(p["model"] for p in points))
    colors = {m: MODEL_COLORS[i % len(MODEL_COLORS)] for i, m in enumerate(models)}
    return _scatter(points, salt, "speed / accuracy trade-off across models", lambda p: colors[p["model"]],
                    legend=colors, markers=True)


def _scatter(points: list[dict], salt: str, title: str, color_of, legend: dict[str, str],
             markers: bool = False) -> str:
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    use_top1 = all(p["top1"] is not None for p in points)
    sizes = [p["size"] for p in points if p["size"] is not None]
    biggest = max(sizes) if sizes else 1.0
    placed = []
    with matplotlib.rc_context(plot_style(salt)):
        fig = Figure(figsize=(9, 4.6), layout="constrained")
        ax = fig.subplots()
        for p in points:
            y = p["top1"] if use_top1 else p["size"]
            if y is None:
                continue
            area = 40 + 500 * ((p["size"] or 0) / biggest if biggest else 0)
            marker = PRECISION_MARKERS.get(p["precision"], "o") if markers else "o"
            ax.scatter([p["x"]], [y], s=area, color=color_of(p), alpha=0.55, marker=marker,
                       edgecolors="black", linewidths=0.6, zorder=3)
            show_size = p.get("show_size", True) and p["size"] is not None and use_top1
            size_text = f", {p['size']:.2f} MiB" if show_size else ""
            placed.append((p["x"], y, f"{p['label']}{size_text}", (area / 3.1416) ** 0.5))
        ax.set_xlabel("p50 latency per inference (ms) — left is faster")
        ax.set_ylabel("top-1 (%) — up is better" if use_top1 else "file size (MiB)")
        ax.set_title(title + ("" if use_top1 else "  (top-1 not measured for every file: y = size)"))
        xs, ys = [p[0] for p in placed], [p[1] for p in placed]
        span = max(xs) - 0
        ax.set_xlim(0, max(xs) + 0.35 * span if span else 1.0)
        low, high = min(ys), max(ys)
        pad = max((high - low) * 0.25, 5.0 if use_top1 else 0.1 * max(abs(high), 1e-3))
        bottom, top = low - pad, high + pad
        if use_top1:  # a percentage: never below 0 or above 100, and never a sub-point-wide axis
            bottom, top = max(bottom, 0.0), min(top, 100.0)
        else:
            bottom = max(bottom, 0.0)
        room = 0.08 * (top - bottom)  # markers at 0 % or 100 % stay off the axis lines
        ax.set_ylim(bottom - room, top + room)
        handles = [Line2D([], [], marker="o", linestyle="", color=c, alpha=0.7, label=k) for k, c in legend.items()]
        if markers:
            seen = list(dict.fromkeys(p["precision"] for p in points))
            handles += [Line2D([], [], marker=PRECISION_MARKERS.get(k, "o"), linestyle="", color="#555555",
                               label=k) for k in seen]
        ax.legend(handles=handles, loc="best", fontsize=8, title="marker area = file size",
                  title_fontsize=8)
        label_points(fig, ax, placed)
        return figure_svg(fig, title)
