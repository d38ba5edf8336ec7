"""Console tables for `mnetdeploy quantize` (rich). Only formatting: every number comes from the result."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def artifacts_table(result: dict[str, Any]) -> Table:
    checked = result["validation"]
    kind = "real" if checked["source"] == "images" else "synthetic"
    t = Table(title=f"exports in {result['artifact_dir']} (checked against float Keras on {checked['count']} "
                    f"held-out {kind} images)", header_style="bold")
    for col in ("file", "size", "status", "I/O", "max |diff|", "cosine", "top-1 agree", "float layers"):
        t.add_column(col, justify="left" if col in ("file", "status", "I/O", "float layers") else "right")
    for a in result["artifacts"]:
        io = a.get("io") or {}
        io_text = f"{io.get('input', {}).get('dtype', '?')}/{io.get('output', {}).get('dtype', '?')}"
        c = a["check"]
        t.add_row(a["file"], _size(a["bytes"]), "reused" if a["reused"] else f"new ({a['seconds']:.1f} s)", io_text,
                  f"{c['max_abs_diff']:.2g}", f"{c['cosine']:.4f}", f"{c['top1_agreement']:.1f} %",
                  ", ".join(a.get("keep_float") or []) or "-")
    return t


def calibration_line(result: dict[str, Any]) -> str | None:
    cal = result.get("calibration")
    if not cal:
        return None
    where = cal["directory"] if cal["source"] == "images" else "SYNTHETIC images"
    return f"calibration: {cal['count']} images from {where} (content sha256 {cal['content_hash'][:12]})"


def preparation_lines(result: dict[str, Any]) -> list[str]:
    prep = result.get("preparation") or {}
    lines = []
    if "fold" in prep:
        f = prep["fold"]
        lines.append(f"batch norm folded into {f['folded']} convolutions (max |diff| {f['max_abs_diff']:.2g})")
    if "weights" in prep:
        w = prep["weights"]
        ratio = w.get("median_rounding_error_ratio")
        rounding = w["rounding"] + (f" (median output error {ratio:.2f}x of nearest)" if w["rounding"] == "adaptive"
                                    and ratio is not None else "")
        lines.append(f"int8 weights: bias correction {'on' if w['bias_correction'] else 'off'}, rounding {rounding}, "
                     f"{w['layers']} layers in {w['seconds']:.1f} s")
    return lines


def analysis_table(analysis: dict[str, Any]) -> Table:
    t = Table(title=f"worst layers (written to {analysis['file']}; {analysis['images']} held-out images)",
              header_style="bold")
    for col in ("format", "layer", "own SQNR dB", "lost dB", "SQNR at output dB"):
        t.add_column(col, justify="left" if col in ("format", "layer") else "right")
    for fmt, rows in analysis["worst"].items():
        for r in rows:
            t.add_row(fmt, r["layer"], _num(r.get("own_sqnr_db")), _num(r.get("lost_db")), _num(r.get("sqnr_db")))
    return t


def recovery_table(recovery: dict[str, Any]) -> Table:
    ev = recovery["eval"]
    t = Table(title=f"--max-drop {recovery['max_drop']:g}: float top-1 {recovery['float_top1']:.2f} % on "
                    f"{ev['count']} images of {ev['directory']}", header_style="bold")
    for col in ("format", "float layers", "top-1", "drop", "agreement", "size", "latency p50"):
        t.add_column(col, justify="left" if col in ("format", "float layers") else "right")
    for fmt, entry in recovery["formats"].items():
        for step in entry["steps"]:
            t.add_row(fmt, ", ".join(step["keep_float"]) or "-", f"{step['top1']:.2f} %", f"{step['drop']:+.2f}",
                      f"{step['agreement']:.1f} %", _size(step["bytes"]), f"{step['latency_ms_p50']:.2f} ms")
    return t


def _num(v) -> str:
    return "-" if v is None else f"{v:.1f}"
