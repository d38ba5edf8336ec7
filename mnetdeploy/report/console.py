"""Console tables (rich). Everything here only formats; numbers come from the library."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.table import Table

# Without a terminal, a step that says nothing for this long gets a "still ..." line: CI systems kill jobs
# that print nothing for minutes, and a person reading a log cannot tell a slow conversion from a hang.
HEARTBEAT_SECONDS = 10.0


def stderr_console() -> Console:
    """Progress and messages: stderr, so --json output on stdout stays clean."""
    return Console(stderr=True)


@contextlib.contextmanager
def progress(console: Console, text: str, every: float = HEARTBEAT_SECONDS) -> Iterator[Callable[[str], None]]:
    """Yield `say(message)` for a long command's steps. On a terminal: rich's spinner line (replaced in
    place). Otherwise (CI logs, pipes): one plain line per new message ("... converting model_int8.tflite")
    and a "still ..." line every `every` seconds a step runs without news, so the log shows the job is alive
    and where it is."""
    if console.is_terminal:
        with console.status(text) as status:
            yield status.update
        return
    lines = ProgressLines(console, text, every)
    thread = threading.Thread(target=lines.run, name="progress-heartbeat", daemon=True)
    thread.start()
    try:
        yield lines.update
    finally:
        lines.stop.set()
        thread.join()


class ProgressLines:
    """Progress as plain lines for a console that is not a terminal (see `progress`)."""

    def __init__(self, console: Console, text: str, every: float = HEARTBEAT_SECONDS):
        self.console, self.every, self.message, self.printed = console, every, text, ""
        self.changed = time.monotonic()
        self.stop = threading.Event()
        self._lock = threading.Lock()  # update() runs in the command's thread, beat() in the heartbeat's
        # `text` itself is not printed: input refused before any step starts stays a one-line error.

    def update(self, message: str) -> None:
        with self._lock:
            if message == self.message:
                return
            # A counter ("image 12/100") or a walk over layers ("rounding weights: conv_dw_3") would print a
            # line per item: a message that differs from the last printed one only in its numbers or in what
            # follows its "subject:" waits for the heartbeat instead.
            counting = _shape(message) == _shape(self.printed)
            self.message = message
            if not counting:
                self.changed = time.monotonic()
                self._print(message)

    def beat(self) -> None:
        with self._lock:
            self._print(f"still {self.message} ({time.monotonic() - self.changed:.0f} s)")
            self.printed = self.message

    def run(self) -> None:
        while not self.stop.wait(self.every):
            if time.monotonic() - self.changed >= self.every:
                self.beat()

    def _print(self, text: str) -> None:
        self.printed = text
        self.console.print(f"... {text}", markup=False, highlight=False, soft_wrap=True)


def _shape(message: str) -> str:
    return re.sub(r"[0-9]+", "#", message.split(": ", 1)[0] if ": " in message else message)


def stdout_console() -> Console:
    """Tables on stdout; wide enough not to truncate numbers when piped to a file or CI log."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    return console


def millions(n: int) -> str:
    return f"{n / 1e6:,.3f} M"


def layer_table(summary: dict[str, Any]) -> Table:
    if "arch" not in summary:  # a .tflite file: rows come from its tensor shapes
        title = f"{summary['file']}: params and MACs per op (batch norm folded)"
    elif summary["arch"] == "custom":
        title = (f"custom model  {summary['resolution']}x{summary['resolution']}  {summary['classes']} classes "
                 f"(params and MACs read from the Keras graph)")
    else:
        title = (f"MobileNet {summary['arch']}  alpha {summary['alpha']:g}  {summary['resolution']}x"
                 f"{summary['resolution']}  {summary['classes']} classes")
    t = Table(title=title, show_lines=False, header_style="bold")
    for col in ("layer", "type", "kernel", "stride", "in ch", "out ch", "out size", "params", "MACs"):
        t.add_column(col, justify="left" if col in ("layer", "type") else "right")
    for row in summary["layers"]:
        size = row["out_size"]
        t.add_row(row["name"], row["type"], f"{row['kernel']}x{row['kernel']}", str(row["stride"]),
                  str(row["in_channels"]), str(row["out_channels"]), f"{size}x{size}",
                  f"{row['params']:,}", f"{row['macs']:,}")
    t.add_section()
    t.add_row("total", "", "", "", "", "", "", f"{summary['params']:,}", f"{summary['macs']:,}")
    return t


def totals_lines(summary: dict[str, Any]) -> list[str]:
    if "deploy_params" not in summary:  # an export file: what its tensors hold
        return [f"params {summary['params']:,} (weights and biases of conv/fc ops in the file)",
                f"MACs   {summary['macs']:,} ({summary['macs'] / 1e6:.1f} M multiply-accumulates per image)"]
    lines = [
        f"params {summary['params']:,} (Keras count, incl. batch-norm statistics); "
        f"{summary['deploy_params']:,} after batch-norm folding",
        f"MACs   {summary['macs']:,} ({summary['macs'] / 1e6:.1f} M multiply-accumulates per image)",
    ]
    blocks = summary.get("separable_blocks") or []
    if blocks:
        ratios = [b["ratio"] for b in blocks]
        lines.append(f"depthwise-separable vs standard conv: {min(ratios):.3f}-{max(ratios):.3f} of the "
                     f"cost over {len(blocks)} blocks (1/N + 1/Dk^2)")
    return lines


def print_model_summary(console: Console, summary: dict[str, Any]) -> None:
    """The per-layer table and the totals, as `build` and `info` show them (and how exports execute)."""
    if "layers" in summary:
        console.print(layer_table(summary))
        for line in totals_lines(summary):
            console.print(line)
    if summary.get("execution"):
        console.print(execution_table(summary["execution"]))
    if "arch" not in summary and summary.get("execution"):  # an export file: the ops it runs, by type
        for name, e in summary["execution"].items():
            if e.get("op_types"):
                console.print(f"{name} op types: " + ", ".join(f"{k} x{v}" for k, v in e["op_types"].items()),
                              soft_wrap=True, highlight=False)


def execution_table(execution: dict[str, dict[str, Any]]) -> Table:
    """How each export runs: XNNPACK's share of a TFLite graph, ONNX Runtime's int8 kernels, what is left."""
    t = Table(title="execution on this machine's runtimes", header_style="bold")
    for col in ("file", "runtime", "ops", "accelerated", "partitions", "left on default / float kernels"):
        t.add_column(col, justify="left" if col in ("file", "runtime", "left on default / float kernels") else "right")
    for name, e in execution.items():
        if "error" in e:
            t.add_row(name, "-", "-", "-", "-", f"[red]{e['error']}[/]")
        elif e.get("runtime") == "litert":
            left = ", ".join(f"{k} x{v}" for k, v in e.get("not_delegated_by_type", {}).items()) or "none"
            t.add_row(name, f"litert+{e.get('delegate') or 'none'}", str(e["ops"]),
                      f"{e['delegated_percent']:.1f} % delegated", str(e.get("delegate_partitions", "-")), left)
        else:
            left = ", ".join(f"{k} x{v}" for k, v in e.get("float_by_type", {}).items()) or "none"
            share = f"{e['int8_percent']:.1f} % int8" if e.get("quantized") else "float model"
            left = left if e.get("quantized") else "-"
            t.add_row(name, "onnxruntime", str(e["nodes"]), share, "-", left)
    return t


def pipeline_table(steps) -> Table:
    """One row per `mnetdeploy run` step: what happened and how long it took."""
    t = Table(title="mnetdeploy run", header_style="bold")
    for col in ("step", "status", "seconds", "detail"):
        t.add_column(col, justify="right" if col == "seconds" else "left")
    for s in steps:
        colour = {"ran": "green", "reused": "cyan", "skipped": "dim", "failed": "red"}.get(s.status, "")
        t.add_row(s.name, f"[{colour}]{s.status}[/]" if colour else s.status, f"{s.seconds:.1f}", s.detail)
    return t


def eval_table(results) -> Table:
    """One row per evaluated model: accuracy and agreement with the reference."""
    table = Table(title="accuracy", header_style="bold")
    devices = any(r.device != "host" for r in results)   # device evals: host and device rows side by side
    columns = ("model", *(("device",) if devices else ()), "format", "precision", "n", "top-1 %", "top-5 %",
               "agree top-1 %", "cosine", "offset", "seconds")
    for col in columns:
        table.add_column(col, justify="left" if col in ("model", "device", "format", "precision") else "right")
    for r in results:
        agree = "reference" if r.reference else ("-" if r.agreement_top1 is None else f"{r.agreement_top1:.2f}")
        table.add_row(r.model, *((r.device,) if devices else ()), r.format, r.precision, str(r.n), f"{r.top1:.2f}",
                      f"{r.top5:.2f}", agree, "-" if r.cosine is None else f"{r.cosine:.5f}", str(r.label_offset),
                      f"{r.seconds:.1f}")
    return table
