"""Scatter-plot labels stay readable: on the report's trade-off plot, the comparison plot and the sweep's
frontier plots, no label box overlaps another label, any marker or the legend, and every label stays inside
the axes, even for tight clusters and for many identical points. The figures are the ones the real plot
functions render (caught on their way to SVG); the boxes are matplotlib's own extents after a draw."""

from __future__ import annotations

import pytest
from matplotlib.collections import PathCollection
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Affine2D, Bbox
from sweep_state import sweep_state

from mnetdeploy.report import plots
from mnetdeploy.sweep_report import frontier_svg

FILES = [("model_fp32.tflite", "tflite", "fp32", 1_895_216), ("model_fp32.onnx", "onnx", "fp32", 1_901_532),
         ("model_fp16.tflite", "tflite", "fp16", 951_040), ("model_int8.tflite", "tflite", "int8", 591_096),
         ("model_int8.onnx", "onnx", "int8", 640_118)]


@pytest.fixture
def figures(monkeypatch) -> list:
    """Every figure a plot function turns into SVG, kept for inspection (the SVG is still made as usual)."""
    caught = []
    real = plots.figure_svg

    def keep(fig, description: str) -> str:
        caught.append(fig)
        return real(fig, description)

    monkeypatch.setattr(plots, "figure_svg", keep)
    return caught


def _report(p50s: list[float], top1s: list[float], threads: tuple[int, ...]) -> dict:
    """A report of five files (TFLite and ONNX; fp32, fp16, int8), each benchmarked at every thread count."""
    latency = [{"model": name, "format": fmt, "precision": prec, "device": "host", "runtime": "litert",
                "threads": n, "latency_ms": {"p50": p50 / n ** 0.3}}
               for (name, fmt, prec, _), p50 in zip(FILES, p50s) for n in threads]
    accuracy = [{"model": name, "format": fmt, "precision": prec, "n": 500, "top1": top1, "device": "host"}
                for (name, fmt, prec, _), top1 in zip(FILES, top1s)]
    return {"artifacts": [{"file": name, "format": fmt, "precision": prec, "bytes": size}
                          for name, fmt, prec, size in FILES],
            "latency": latency, "accuracy": accuracy}


def _marker_boxes(fig, ax) -> list[Bbox]:
    """The pixel box of every scatter marker on `ax`, from its path, size and edge width."""
    boxes = []
    for coll in ax.collections:
        if not isinstance(coll, PathCollection):
            continue
        paths, scales = coll.get_paths(), coll.get_transforms()   # scales: marker size in pixels, set by draw
        edge = max(coll.get_linewidths(), default=0) * fig.dpi / 72 / 2
        for i, (x, y) in enumerate(coll.get_offset_transform().transform(coll.get_offsets())):
            e = paths[i % len(paths)].get_extents(Affine2D(scales[i % len(scales)]))
            boxes.append(Bbox.from_extents(x + e.x0 - edge, y + e.y0 - edge, x + e.x1 + edge, y + e.y1 + edge))
    return boxes


def _overlap(a: Bbox, b: Bbox) -> bool:
    # More than half a pixel both ways: boxes that merely touch (or differ by rounding) are not a collision.
    return min(a.x1, b.x1) - max(a.x0, b.x0) > 0.5 and min(a.y1, b.y1) - max(a.y0, b.y0) > 0.5


def assert_labels_clear(fig, labelled: int) -> None:
    """`labelled` labels on the figure's axes, none overlapping another, a marker or the legend, all inside."""
    fig.draw_without_rendering()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if isinstance(t, Annotation)]
    assert len(labels) == labelled, "every point keeps its label"
    # The text's own box: Annotation.get_window_extent would add the leader line, which must reach the marker.
    boxes = [Text.get_window_extent(t) for t in labels]
    names = [t.get_text() for t in labels]
    inside = ax.get_window_extent()
    problems = [f"{n!r} leaves the axes" for n, b in zip(names, boxes)
                if b.x0 < inside.x0 - 0.5 or b.x1 > inside.x1 + 0.5 or b.y0 < inside.y0 - 0.5
                or b.y1 > inside.y1 + 0.5]
    problems += [f"{names[i]!r} overlaps {names[j]!r}" for i in range(len(boxes)) for j in range(i + 1, len(boxes))
                 if _overlap(boxes[i], boxes[j])]
    markers = _marker_boxes(fig, ax)
    problems += [f"{n!r} covers a marker at ({m.x0:.0f}, {m.y0:.0f}) px" for n, b in zip(names, boxes)
                 for m in markers if _overlap(b, m)]
    legend = ax.get_legend()
    if legend is not None:
        box = legend.get_window_extent()
        problems += [f"{n!r} covers the legend" for n, b in zip(names, boxes) if _overlap(b, box)]
    assert not problems, f"{len(problems)} label collision(s): " + "; ".join(problems)


P50S = [2.31, 2.36, 2.28, 2.25, 2.33]   # five files within 0.1 ms of each other


@pytest.mark.parametrize(("top1s", "threads"), [
    ([70.1, 70.1, 70.0, 69.6, 69.5], (1, 2, 4)),   # three clusters of five, every file at nearly the same top-1
    ([0.0] * 5, (1, 2)),                            # random weights: every top-1 is 0, on the axes' bottom edge
], ids=["three-thread-counts", "random-weights"])
def test_report_tradeoff_labels_tight_clusters_without_overlap(figures, top1s, threads):
    assert plots.tradeoff_svg(_report(P50S, top1s, threads)) is not None
    assert_labels_clear(figures[-1], labelled=len(FILES) * len(threads))


def test_comparison_labels_many_identical_points_without_overlap(figures):
    # Four random-weight models in four precisions on one machine: top-1 0 and the same latency, 16 times.
    sizes = {"fp32": 1_895_216, "fp16": 951_040, "dynamic": 620_312, "int8": 591_096}
    rows = [{"label": f"v2_0.35_96_{i}", "precision": prec, "threads": 1, "bytes": size, "p50": 1.0, "top1": 0.0}
            for i in range(4) for prec, size in sizes.items()]
    assert plots.comparison_svg(rows) is not None
    assert_labels_clear(figures[-1], labelled=16)


def _broken_int8_sweep() -> dict:
    """16 points whose int8 models all score top-1 0 (a broken calibration) at the same, fastest latency: all
    eight tie on the frontier, so eight labels share one spot in the corner, beside eight fp32 labels."""
    measured = []
    for alpha in (0.25, 0.35, 0.5, 0.75):
        for res in (96, 128):
            p50, top1 = round(0.1 + alpha * res / 200, 3), round(40 + 30 * alpha + res / 32, 1)
            measured.append((alpha, res, "fp32", p50, top1))
            measured.append((alpha, res, "int8", 0.2, 0.0))
    return sweep_state(measured)


@pytest.mark.parametrize("x_key", ["p50_ms", "macs"])
def test_sweep_frontier_labels_do_not_overlap(figures, x_key):
    state = _broken_int8_sweep()
    labelled = set(state["frontier"]["rows"]) | {state["recommendation"]["row"]}
    assert len(labelled) == 16 and sum(state["rows"][i]["top1"] == 0 for i in labelled) == 8
    assert frontier_svg(state, x_key) is not None
    assert_labels_clear(figures[-1], labelled=16)
