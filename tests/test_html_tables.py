"""HTML tables fit the page: at a 1400 px wide window no `.table-wrap` scrolls sideways (content hidden), because
prose columns (the sweep fit table's departures, long paths) wrap while numbers stay on one line. Measured in
headless Chromium on pages rendered by the real renderers from hand-made states (no model is built)."""

from __future__ import annotations

from pathlib import Path

import browser
from sweep_state import macs, sweep_state

from mnetdeploy.report.html import render_html
from mnetdeploy.sweep_report import sweep_html

WINDOW = (1400, 1200)


def _measured_sweep() -> list[tuple[float, int, str, float, float | None]]:
    """A 4 x 4 x 2 grid whose narrow models run far slower than their MACs predict (memory-bound depthwise
    layers, as on a real CPU): every fit then lists several departures, each with its explanation."""
    rows = []
    for alpha in (0.25, 0.35, 0.5, 1.0):
        for res in (96, 128, 160, 224):
            for precision, ms_per_mmac in (("fp32", 0.012), ("int8", 0.006)):
                p50 = ms_per_mmac * macs(alpha, res) / 1e6 + 0.05
                if alpha <= 0.35:
                    p50 *= 2.5
                top1 = 45 + 25 * alpha + res / 20 - (1.5 if precision == "int8" else 0)
                rows.append((alpha, res, precision, round(p50, 4), round(top1, 1)))
    return rows


def wide_tables(page: Path) -> list[str]:
    """The tables of `page` that scroll sideways at WINDOW: their content is wider than the page shows."""
    browser.require_chromium()
    widths = browser.table_widths(page, WINDOW)
    assert widths, f"no table measured in {page}"
    return [f"{page.name} #{w.section}: {w.scroll} px wide in {w.client} px" for w in widths if w.scroll > w.client]


def test_sweep_fit_table_with_long_departures_fits_1400_px(tmp_path):
    state = sweep_state(_measured_sweep())
    assert all(len(f["departures"]) >= 3 for f in state["fit"])  # the long prose cells this test is about
    page = tmp_path / "sweep.html"
    page.write_text(sweep_html(state))
    assert wide_tables(page) == []


def _report(name: str, calibration_dir: str) -> dict:
    """A measured report as report.json holds it: two files benchmarked, one calibrated from a deep path."""
    files = [("model_fp32.tflite", "fp32", 1895216, 2.31), ("model_int8_integer_only_per_channel.tflite", "int8",
                                                             591096, 1.12)]
    return {"schema": "mnetdeploy-report", "schema_version": 1, "tool_version": "test", "name": name,
            "artifact_dir": f"/home/user/models/{name}",
            "model": {"arch": "v2", "alpha": 0.35, "resolution": 96, "params": 1_660_000, "macs": 11_600_000,
                      "weights": {"source": "/home/user/checkpoints/mobilenet_v2_0.35_96_finetuned_on_flowers.h5"}},
            "artifacts": [{"file": f, "format": "tflite", "precision": p, "bytes": b,
                           "calibration": {"source": "images", "directory": calibration_dir, "count": 100,
                                           "content_hash": "ab" * 32} if p == "int8" else None}
                          for f, p, b, _ in files],
            "latency": [{"model": f, "format": "tflite", "precision": p, "device": "host", "runtime": "litert",
                         "xnnpack": True, "threads": 1, "runs": 50,
                         "latency_ms": {"p50": ms, "p90": ms * 1.1, "p99": ms * 1.3, "mean": ms, "std": 0.02,
                                        "min": ms * 0.9}, "init_ms": 12.5, "first_ms": 3.1, "peak_rss_mb": 180}
                        for f, p, _, ms in files]}


def test_reports_with_long_paths_fit_1400_px(tmp_path):
    deep = "/home/user/datasets/imagenet/calibration/representative_images_for_int8_quantization_2024_run_3"
    one, two = _report("v2_0.35_96", deep), _report("v2_0.35_96_flowers_finetuned_with_augmentation", deep)
    report = tmp_path / "report.html"
    report.write_text(render_html([one]))
    comparison = tmp_path / "comparison.html"
    comparison.write_text(render_html([one, two]))
    assert wide_tables(report) + wide_tables(comparison) == []
