"""Scatter-point labels that never overlap: each label goes to the free spot nearest its marker, tied to it by a
thin leader line; free means inside the axes and clear of every marker, the legend and the labels placed
before it. When nothing is free, the labels get smaller and the figure taller, step by step, before any two
are allowed to touch.

Points of equal speed or accuracy are common (random weights: every top-1 is 0; the same model in TFLite and
ONNX; one file at several thread counts), and a fixed set of offsets runs out in such a cluster.
"""

from __future__ import annotations

from typing import Any

GAP_PX = 2.0          # kept between a label and a marker, the legend or the label above or below it
WORD_GAP_PX = 9.0     # kept between labels side by side: less and two labels read as one
GRID_PX = 3.0         # spacing of the candidate positions: fine enough to tuck a label in next to its marker
SHORTLIST = 400       # nearest free candidates weighed for the soft costs below
LINE_COST_PX = 25.0   # a label may sit this much further away to keep a plotted line out of its text ...
LEADER_COST_PX = 40.0  # ... and this much per label its leader line would cross
# (font size change in pt, figure height factor): tried in turn until every label fits
ATTEMPTS = ((0, 1.0), (-1, 1.0), (-1, 1.35), (-2, 1.35), (-2, 1.8))
LEADER = {"arrowstyle": "-", "color": "#8a8a8a", "linewidth": 0.6, "shrinkA": 1}


def label_points(fig, ax, points: list[tuple[float, float, str, float]], fontsize: float = 8) -> None:
    """Label each (x, y, text, marker radius in pt) on `ax`; the legend, if any, stays where it first landed."""
    height = fig.get_figheight()
    for i, (smaller, taller) in enumerate(ATTEMPTS):
        fig.set_figheight(height * taller)
        fig.draw_without_rendering()  # final layout: the data -> pixel transform is now exact
        if _place_all(ax, points, fontsize + smaller, crowded_ok=i == len(ATTEMPTS) - 1):
            return


def _place_all(ax, points: list[tuple[float, float, str, float]], fontsize: float, crowded_ok: bool) -> bool:
    """Add every label at its best free spot; False (and nothing added) when one found no free spot, unless
    `crowded_ok`, in which case it goes where it overlaps least rather than being dropped."""
    legend = _legend_box(ax)
    # taken: no label may overlap these; labels: no leader line should cross these; lines: no text should cover.
    scene = {"taken": [_pad(b, GAP_PX, GAP_PX) for b in [*_marker_boxes(ax), *legend]],
             "labels": list(legend), "lines": _line_points(ax), "frame": ax.get_window_extent()}
    added = []
    for x, y, text, r in sorted(points, key=lambda p: (p[0], p[1])):
        label = ax.annotate(text, (x, y), xytext=(0, 0), textcoords="offset points", fontsize=fontsize,
                            ha="left", va="bottom", color="#222222", arrowprops={**LEADER, "shrinkB": r * 0.9})
        added.append(label)
        box = _text_box(label)
        spot = _best_spot(scene, (box.width, box.height), ax.transData.transform((x, y)), crowded_ok)
        if spot is None:
            for a in added:
                a.remove()
            return False
        px_per_pt = ax.get_figure(root=True).dpi / 72
        label.xyann = ((spot[0] - box.x0) / px_per_pt, (spot[1] - box.y0) / px_per_pt)
        placed = (spot[0], spot[1], spot[0] + box.width, spot[1] + box.height)
        scene["taken"].append(_pad(placed, WORD_GAP_PX, GAP_PX))
        scene["labels"].append(placed)
        # Its leader line is now a line like any other: later labels keep their text off it.
        centre = (spot[0] + box.width / 2, spot[1] + box.height / 2)
        scene["lines"] = _along(scene["lines"], ax.transData.transform((x, y)), centre)
    return True


def _pad(box, dx: float, dy: float) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    return x0 - dx, y0 - dy, x1 + dx, y1 + dy


def _text_box(label) -> Any:
    """The label's text box in pixels (without its leader line, which Annotation.get_window_extent includes)."""
    from matplotlib.text import Text

    label.get_window_extent()   # positions the annotation for the current layout
    return Text.get_window_extent(label)


def _best_spot(scene: dict, size: tuple[float, float], marker, crowded_ok: bool) -> tuple[float, float] | None:
    """Lower-left corner, in pixels, of the best free position for a box of `size` labelling `marker`. The
    candidates are a grid over the whole axes, so a free spot anywhere is found however far a cluster pushes
    it; the nearest ones are then weighed for plotted lines under the text and leader lines across labels."""
    import numpy as np

    x0, y0 = _grid(scene["frame"], size)
    if not len(x0):   # the label is larger than the axes: nowhere is free
        return (float(marker[0]), float(marker[1])) if crowded_ok else None
    w, h = size
    score = _distance_score(x0, y0, size, marker)
    hits = _hits(x0, y0, size, np.array(scene["taken"]).reshape(-1, 4))
    free = np.flatnonzero(hits == 0)
    if not len(free):
        if not crowded_ok:
            return None
        least = np.lexsort((score, hits))[0]   # fewest overlaps, then nearest
        return float(x0[least]), float(y0[least])
    near = free[np.argsort(score[free])[:SHORTLIST]]
    cost = score[near] + LINE_COST_PX * _covers_line(x0[near], y0[near], size, scene["lines"])
    cost += LEADER_COST_PX * _leader_crossings(x0[near] + w / 2, y0[near] + h / 2, marker, scene["labels"])
    best = near[np.argmin(cost)]
    return float(x0[best]), float(y0[best])


def _grid(frame, size: tuple[float, float]) -> tuple[Any, Any]:
    """Lower-left corners of every candidate box that lies wholly inside the axes."""
    import numpy as np

    w, h = size
    xs = np.arange(frame.x0 + GAP_PX, frame.x1 - w - GAP_PX, GRID_PX)
    ys = np.arange(frame.y0 + GAP_PX, frame.y1 - h - GAP_PX, GRID_PX)
    x0, y0 = np.meshgrid(xs, ys)
    return x0.ravel(), y0.ravel()


def _distance_score(x0, y0, size: tuple[float, float], marker) -> Any:
    """Pixels from the marker centre to the nearest point of each candidate box, with ties broken so that
    level with the marker beats above or below, and right of it beats left (reading order)."""
    import numpy as np

    w, h = size
    mx, my = marker
    dx = np.maximum(np.maximum(x0 - mx, mx - (x0 + w)), 0)
    dy = np.maximum(np.maximum(y0 - my, my - (y0 + h)), 0)
    return np.hypot(dx, dy) + 0.2 * np.abs(y0 + h / 2 - my) + 0.5 * (x0 + w / 2 < mx)


def _hits(x0, y0, size: tuple[float, float], taken) -> Any:
    """How many of the `taken` boxes (x0, y0, x1, y1 rows) each candidate box overlaps."""
    import numpy as np

    if not len(taken):
        return np.zeros(len(x0), dtype=int)
    w, h = size
    t = taken[None, :, :]
    apart = ((x0[:, None] + w <= t[..., 0]) | (x0[:, None] >= t[..., 2])
             | (y0[:, None] + h <= t[..., 1]) | (y0[:, None] >= t[..., 3]))
    return (~apart).sum(axis=1)


def _covers_line(x0, y0, size: tuple[float, float], points) -> Any:
    """1 where a candidate box would lie over a plotted line (the frontier's steps, a fit), else 0."""
    import numpy as np

    if not len(points):
        return np.zeros(len(x0))
    w, h = size
    px, py = points[None, :, 0], points[None, :, 1]
    inside = (px > x0[:, None]) & (px < x0[:, None] + w) & (py > y0[:, None]) & (py < y0[:, None] + h)
    return inside.any(axis=1).astype(float)


def _leader_crossings(cx, cy, marker, labels: list) -> Any:
    """For leader lines from `marker` to each candidate centre: how many placed labels (or the legend) each
    would cross."""
    import numpy as np

    if not labels:
        return np.zeros(len(cx))
    t = np.linspace(0.0, 1.0, 16)[None, :, None]
    xs = marker[0] + (cx[:, None, None] - marker[0]) * t   # candidates x samples x 1
    ys = marker[1] + (cy[:, None, None] - marker[1]) * t
    b = np.array(labels)[None, None, :, :]
    inside = (xs > b[..., 0]) & (xs < b[..., 2]) & (ys > b[..., 1]) & (ys < b[..., 3])
    return inside.any(axis=1).sum(axis=1)


def _line_points(ax) -> Any:
    """Points every couple of pixels along each plotted line (markers excluded), in pixels."""
    import numpy as np

    points = np.empty((0, 2))
    for line in ax.lines:
        xy = line.get_transform().transform(line.get_path().vertices)   # the drawn path: steps included
        for a, b in zip(xy[:-1], xy[1:]):
            points = _along(points, a, b)
    return points


def _along(points, a, b) -> Any:
    """`points` plus points every 2 pixels from `a` to `b` (a segment off the scale, e.g. log of 0, adds none)."""
    import numpy as np

    if not np.isfinite([*a, *b]).all():
        return points
    n = max(2, int(np.hypot(b[0] - a[0], b[1] - a[1]) / 2))
    return np.concatenate([points, np.column_stack([np.linspace(a[0], b[0], n), np.linspace(a[1], b[1], n)])])


def _marker_boxes(ax) -> list[tuple[float, float, float, float]]:
    """Pixel box of every scatter marker on `ax` (labelled or not), from its own path, size and edge: a star or a
    large marker takes its real room."""
    import numpy as np
    from matplotlib.collections import PathCollection
    from matplotlib.transforms import Affine2D

    dpi = ax.get_figure(root=True).dpi
    boxes = []
    for coll in ax.collections:
        offsets = np.asarray(coll.get_offsets())
        if not isinstance(coll, PathCollection) or not len(offsets):
            continue
        paths, scales = coll.get_paths(), coll.get_transforms()   # scales: marker size in pixels, set by draw
        edge = np.max(coll.get_linewidth(), initial=0) * dpi / 72 / 2
        for i, (x, y) in enumerate(coll.get_offset_transform().transform(offsets)):
            e = paths[i % len(paths)].get_extents(Affine2D(scales[i % len(scales)]))
            boxes.append((x + e.x0 - edge, y + e.y0 - edge, x + e.x1 + edge, y + e.y1 + edge))
    return boxes


def _legend_box(ax) -> list[tuple[float, float, float, float]]:
    """The legend's pixel box (none without a legend), after pinning the legend there: loc="best" would
    otherwise move it at the next draw to dodge the labels, onto whatever they were kept clear of."""
    legend = ax.get_legend()
    if legend is None:
        return []
    box, frame = legend.get_window_extent(), ax.get_window_extent()
    legend.set_loc(((box.x0 - frame.x0) / frame.width, (box.y0 - frame.y0) / frame.height))
    return [(box.x0, box.y0, box.x1, box.y1)]
