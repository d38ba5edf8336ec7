"""What report.md and report.html show, computed once from report.json (the view model; write.py writes files).

Both renderings are drawn from the same `Section`s (tables of already-formatted cells plus notes), so a number
reads identically in the Markdown and in the HTML. Sections that were not measured yet say "not measured" and
name the command that fills them; a hand-edited or partial report.json renders what it has instead of crashing.
Text in notes may mark commands and paths with `backticks` (code in both renderings).
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DASH = "—"
FORMAT_ORDER = {"keras": 0, "tflite": 1, "onnx": 2}
PRECISION_ORDER = {"fp32": 0, "fp16": 1, "bf16": 2, "dynamic": 3, "int16x8": 4, "int8": 5}


# ------------------------------------------------------------------------------------------- view model

@dataclass
class Cell:
    text: str
    title: str | None = None        # HTML tooltip: the exact value behind a rounded one (bytes, full hash)


@dataclass
class Table:
    columns: list[str]
    numeric: list[bool]             # right-aligned columns
    rows: list[list[Cell]]


@dataclass
class Section:
    key: str                        # HTML anchor
    title: str
    table: Table | None = None
    notes: list[str] = field(default_factory=list)
    missing: str | None = None      # shown instead of the table: what is missing and the command that fills it
    bullets: list[str] = field(default_factory=list)  # e.g. warnings


def make_table(columns: list[tuple[str, bool]], rows: list[list[Any]]) -> Table:
    """`columns` as (name, numeric); cells as str or Cell."""
    cells = [[c if isinstance(c, Cell) else Cell(str(c)) for c in row] for row in rows]
    return Table([name for name, _ in columns], [num for _, num in columns], cells)


# --------------------------------------------------------------------------------------------- formatting

def number(x: Any) -> float | None:
    """A finite number or None (reports may hold nulls, and a hand-edited one anything)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x) if math.isfinite(x) else None


def fmt(x: Any, digits: int = 3, suffix: str = "") -> str:
    v = number(x)
    return DASH if v is None else f"{v:.{digits}f}{suffix}"


def fmt_int(x: Any) -> str:
    v = number(x)
    return DASH if v is None else f"{int(v):,}"


def fmt_size(n: Any) -> Cell:
    """Binary units (what `ls -lh` shows), the exact byte count in the tooltip."""
    v = number(n)
    if v is None:
        return Cell(DASH)
    text = f"{v / 1024:.1f} KiB" if v < 1024 * 1024 else f"{v / 1024 / 1024:.2f} MiB"
    return Cell(text, f"{int(v):,} bytes")


def fmt_millions(x: Any) -> Cell:
    v = number(x)
    return Cell(DASH) if v is None else Cell(f"{v / 1e6:.2f} M", f"{int(v):,}")


def short_hash(h: Any, n: int = 12) -> Cell:
    return Cell(str(h)[:n], str(h)) if h else Cell(DASH)


def fmt_ms(x: Any) -> str:
    """Latency statistics: 3 decimals everywhere (as `mnetdeploy bench` prints them)."""
    return fmt(x, 3)


def quote(path: Any) -> str:
    return shlex.quote(str(path))


# ------------------------------------------------------------------------------------------ report access

def artifacts(report: dict) -> list[dict]:
    return [a for a in report.get("artifacts") or [] if isinstance(a, dict) and a.get("file")]


def artifact_by_file(report: dict) -> dict[str, dict]:
    return {a["file"]: a for a in artifacts(report)}


def _order(fmt_name: Any, precision: Any) -> tuple[int, int]:
    return FORMAT_ORDER.get(str(fmt_name), 9), PRECISION_ORDER.get(str(precision), 9)


def runtime_label(r: dict) -> str:
    runtime = str(r.get("runtime") or DASH)
    if r.get("xnnpack") is True:
        return f"{runtime}+xnnpack"
    if r.get("xnnpack") is False:
        return f"{runtime} no-xnnpack"
    return runtime


def latency_rows(report: dict) -> list[dict]:
    """Bench results with a latency summary, ordered by device, runtime, threads, then format and precision."""
    rows = [r for r in report.get("latency") or [] if isinstance(r, dict) and isinstance(r.get("latency_ms"), dict)]
    return sorted(rows, key=lambda r: (str(r.get("device")), runtime_label(r), number(r.get("threads")) or 0,
                                       *_order(r.get("format"), r.get("precision")), str(r.get("model"))))


def group_key(r: dict) -> tuple:
    """What must match for two latencies to be compared directly."""
    return (r.get("device"), r.get("runtime"), r.get("xnnpack"), r.get("threads"), r.get("format"))


def accuracy_rows(report: dict) -> list[dict]:
    rows = [r for r in report.get("accuracy") or [] if isinstance(r, dict) and r.get("model")]
    return sorted(rows, key=lambda r: (_data_hash(r), not r.get("reference"), *_order(r.get("format"),
                                                                                       r.get("precision")),
                                       str(r.get("model"))))


def _data_hash(r: dict) -> str:
    return str((r.get("data") or {}).get("hash") or "")


def on_host(r: dict) -> bool:
    return (r.get("device") or "host") == "host"


def top1_by_file(report: dict) -> dict[str, dict]:
    """Per model file, its host accuracy record on the largest evaluated image set (the most trustworthy one)."""
    best: dict[str, dict] = {}
    for r in filter(on_host, accuracy_rows(report)):
        name = str(r["model"])
        if number(r.get("top1")) is not None and (name not in best or (r.get("n") or 0) > (best[name].get("n") or 0)):
            best[name] = r
    return best


def _references(rows: list[dict]) -> dict[str, dict]:
    """Per evaluated image set, the reference row: the one eval compared against, else Keras, else fp32."""
    refs: dict[str, tuple[int, dict]] = {}
    for r in filter(on_host, rows):   # a device row compares with the host, never serves as the reference
        h = _data_hash(r)
        rank = (0 if r.get("reference") else 1 if r.get("format") == "keras"
                else 2 if r.get("precision") == "fp32" else 9)
        if rank < 9 and (h not in refs or rank < refs[h][0]):
            refs[h] = (rank, r)
    return {h: r for h, (_, r) in refs.items()}


def wilson_interval(top1: Any, n: Any) -> tuple[float, float] | None:
    """95 % Wilson score interval (percent) of a top-1 percentage measured on n images; unlike the normal
    approximation it stays honest at 0 % and 100 % and for small n."""
    p, n = number(top1), number(n)
    if p is None or not n or n < 1:
        return None
    p, z = min(max(p / 100.0, 0.0), 1.0), 1.96
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100.0 * max(centre - half, 0.0), 100.0 * min(centre + half, 1.0)


# ------------------------------------------------------------------------------------------------ header

def title(report: dict) -> str:
    return str(report.get("name") or Path(str(report.get("artifact_dir") or "model")).name)


def model_line(report: dict) -> str:
    m = report.get("model") or {}
    res = m.get("resolution")
    parts = [f"MobileNet {m.get('arch', '?')}", f"α {m.get('alpha', '?')}",
             f"{res}×{res}" if res else "resolution ?", f"{m.get('classes', '?')} classes"]
    return " · ".join(parts)


def weights_text(weights: Any) -> str:
    if not isinstance(weights, dict):
        return "unknown"
    if not weights.get("source"):
        seed = f", seed {weights['seed']}" if weights.get("seed") is not None else ""
        return f"random initialisation: {weights.get('init', 'no trained weights')}{seed}"
    sha = f", sha256 {str(weights['sha256'])[:12]}" if weights.get("sha256") else ""
    return f"{weights['source']} ({weights.get('file') or '?'}{sha})"


def header_facts(report: dict) -> list[tuple[str, Cell]]:
    """(label, value) pairs under the title: the model, the tool, and the machine the latencies come from."""
    m = report.get("model") or {}
    params, deploy = fmt_int(m.get("params")), fmt_int(m.get("deploy_params"))
    facts = [
        ("model", Cell(model_line(report))),
        ("params", Cell(f"{params} (Keras count, incl. batch-norm statistics)")),
        ("deploy params", Cell(f"{deploy} (after batch-norm folding)")),
        ("MACs", Cell(f"{fmt_millions(m.get('macs')).text} per image", fmt_int(m.get("macs")))),
        ("weights", Cell(weights_text(m.get("weights")))),
        ("tool", Cell(f"mnetdeploy {report.get('tool_version', '?')}")),
        ("generated", Cell(str(report.get("generated") or DASH))),
        ("artifact dir", Cell(str(report.get("artifact_dir") or DASH))),
    ]
    stamps = sorted(str(r["timestamp"]) for r in latency_rows(report) if r.get("timestamp"))
    if stamps:
        facts.append(("benchmarked", Cell(stamps[0] if stamps[0] == stamps[-1] else f"{stamps[0]} … {stamps[-1]}")))
    env = report.get("environment")
    if not isinstance(env, dict):
        facts.append(("environment", Cell("not recorded (no benchmark yet)")))
        return facts
    facts += environment_facts(env)
    return facts


def environment_facts(env: dict) -> list[tuple[str, Cell]]:
    affinity = env.get("cpu_affinity")
    cores = fmt_int(env.get("cpu_count"))
    if isinstance(affinity, list) and affinity and len(affinity) != env.get("cpu_count"):
        cores += f" ({len(affinity)} usable: {','.join(map(str, affinity))})"
    governor = (env.get("cpufreq") or {}).get("governor")
    if isinstance(governor, list):
        governor = "mixed: " + ", ".join(map(str, governor))
    load = env.get("load_average")
    packages = env.get("packages") or {}
    runtimes = ", ".join(f"{k} {v}" for k, v in packages.items() if v and k != "mnetdeploy")
    return [
        ("CPU", Cell(str(env.get("cpu_model") or "unknown"), str(env.get("machine") or ""))),
        ("CPU features", cpu_features_cell(env.get("cpu_features"))),
        ("cores", Cell(cores)),
        ("governor", Cell(str(governor) if governor else "not exposed (VM/container)")),
        ("load average", Cell(" / ".join(f"{x:g}" for x in load) + " (1/5/15 min)" if isinstance(load, list)
                              else DASH)),
        # benchmark_model on a phone runs no Python: say nothing rather than "Python None"
        ("runtimes", Cell(runtimes + (f"; Python {env['python']}" if env.get("python") else "") or DASH)),
        ("OS", Cell(str(env.get("os") or DASH), f"host {env.get('hostname', '?')}")),
    ]


def cpu_features_cell(record: Any) -> Cell:
    """The int8-relevant instruction-set features and what they mean for int8 (mnetdeploy/cpu.py)."""
    from mnetdeploy.cpu import from_dict

    cpu = from_dict(record) if isinstance(record, dict) else None
    if cpu is None:
        return Cell("not recorded")
    absent = [k for k, v in (record.get("features") or {}).items() if not v]
    text = " ".join(cpu.present) or "none of the int8-relevant ones"
    text += f" (int8 dot product: {'yes' if cpu.int8_dot_product else 'no'})"
    return Cell(text, f"absent: {' '.join(absent) or 'none'}; read by {cpu.source}")


# ---------------------------------------------------------------------------------------------- sections

def sections(report: dict) -> list[Section]:
    # The verdict, then the warnings: they qualify every number below them.
    return [gate_section(report), warnings_section(report), artifacts_section(report), accuracy_section(report),
            latency_section(report), int8_graph_section(report), calibration_section(report)]


def gate_section(report: dict) -> Section:
    """The last `mnetdeploy gate` verdict on this model (results/gate.json), or how to get one."""
    g = report.get("gate")
    where = shlex.quote(str(report.get("artifact_dir") or title(report)))
    if not isinstance(g, dict) or not g.get("verdict"):
        return Section("gate", "Gate", missing=f"not gated; run `mnetdeploy gate {where} --budgets FILE` "
                                               f"then `mnetdeploy report {where}`")
    notes = [str(g.get("summary") or f"gate {str(g['verdict']).upper()}"),
             f"budgets `{g.get('budgets')}`, gated {g.get('gated') or '?'} (against the report of "
             f"{g.get('report_generated') or '?'}; re-gate after new measurements)"]
    return Section("gate", "Gate", notes=notes, bullets=[str(f) for f in g.get("failures") or []])


def artifacts_section(report: dict) -> Section:
    items = sorted(artifacts(report), key=lambda a: (*_order(a.get("format"), a.get("precision")), a["file"]))
    if not items:
        return Section("artifacts", "Artifacts", missing="no model files in the directory; run `mnetdeploy build` "
                                                        "(report.json lists what was there when it was assembled)")
    fp32_bytes = {a.get("format"): a.get("bytes") for a in items if a.get("precision") == "fp32"}
    rows, unvalidated = [], []
    for a in items:
        base = number(fp32_bytes.get(a.get("format")))
        ratio = (f"{a['bytes'] / base:.2f}×" if base and number(a.get("bytes")) is not None
                 and a.get("precision") != "fp32" else DASH)
        v = a.get("validation") if isinstance(a.get("validation"), dict) else None
        if a.get("format") == "keras":
            diff = cos = agree = Cell("reference")
        elif v:
            diff = Cell(_sci(v.get("max_abs_diff")))
            cos = Cell(fmt(v.get("cosine"), 6))
            agree = Cell(fmt(v.get("top1_agreement"), 1, " %"),
                         f"over {v.get('n', '?')} {v.get('images') or 'inputs'}" if v.get("n") else None)
        else:
            diff = cos = agree = Cell(DASH)
            unvalidated.append(a["file"])
        rows.append([a["file"], a.get("format", DASH), a.get("precision", DASH), fmt_size(a.get("bytes")),
                     Cell(fmt_int(a.get("bytes"))), ratio, short_hash(a.get("sha256")), diff, cos, agree,
                     _execution_cell(a.get("execution"))])
    notes = []
    if any(a.get("format") == "onnx" and a.get("precision") == "int8" for a in items):
        notes.append(ONNX_INT8_DEPLOYMENT_NOTE)
    if unvalidated:
        notes.append(f"{DASH}: no validation against Keras recorded for {', '.join(unvalidated)} (validation is "
                     "recorded by the export/quantize step; the accuracy table's agreement column compares "
                     "outputs on images).")
    return Section("artifacts", "Artifacts", make_table(
        [("file", False), ("format", False), ("precision", False), ("size", True), ("bytes", True),
         ("vs fp32", True), ("sha256", False), ("max |Δ| vs Keras", True), ("cosine", True),
         ("top-1 agree", True), ("execution", False)], rows), notes=notes)


ONNX_INT8_DEPLOYMENT_NOTE = (
    "Deploying the int8 .onnx with your own ONNX Runtime session: on x86 CPUs without an int8 dot product "
    "(no AVX512-VNNI, AVX-VNNI or AMX: AMD Zen 1-3, Intel before Ice Lake) its default int8 kernels saturate "
    "and lose accuracy (6.5 top-1 points on the pretrained v1 0.25). There, set "
    "`options.add_session_config_entry(\"session.x64quantprecision\", \"1\")`, as mnetdeploy does on such CPUs; on "
    "VNNI/AMX CPUs and on ARM leave it unset (it would only cost speed: 2x measured on a VNNI CPU).")


def _execution_cell(info: Any) -> Cell:
    """Short form of runtimes/inspect.py's record; the ops left outside the fast path go in the tooltip."""
    if not isinstance(info, dict):
        return Cell(DASH)
    if info.get("error"):
        return Cell("unknown", str(info["error"]))
    if info.get("runtime") == "litert":
        left = ", ".join(f"{k} ×{v}" for k, v in sorted((info.get("not_delegated_by_type") or {}).items()))
        return Cell(f"XNNPACK {fmt(info.get('delegated_percent'), 1, ' %')}",
                    f"default kernels: {left}" if left else f"{info.get('delegate_partitions')} partition(s)")
    if info.get("quantized"):
        falls = ", ".join(f"{k} ×{v}" for k, v in sorted((info.get("fallback_by_type") or {}).items()))
        return Cell(f"int8 kernels {fmt(info.get('int8_percent'), 1, ' %')}",
                    f"float fallbacks: {falls}" if falls else None)
    return Cell("float" if info.get("runtime") else DASH)


def _sci(x: Any) -> str:
    v = number(x)
    return DASH if v is None else f"{v:.2e}"


def accuracy_section(report: dict) -> Section:
    rows = accuracy_rows(report)
    if not rows:
        files = " ".join(quote(Path(str(report.get("artifact_dir") or "DIR")) / a["file"])
                         for a in sorted(artifacts(report), key=lambda a: _order(a.get("format"), a.get("precision"))))
        return Section("accuracy", "Accuracy", missing=f"not measured: run `mnetdeploy eval "
                                                      f"{files or 'MODEL...'} --data IMAGE_DIR` (the first model "
                                                      "is the reference for agreement)")
    refs = _references(rows)
    hashes = sorted({_data_hash(r) for r in rows})
    several = len(hashes) > 1
    devices = not all(map(on_host, rows))
    table_rows = []
    for r in rows:
        ref = refs.get(_data_hash(r))
        top1 = number(r.get("top1"))
        if ref is r:
            delta = agree = "reference"
        else:
            ref_top1 = number(ref.get("top1")) if ref else None
            delta = DASH if top1 is None or ref_top1 is None else f"{top1 - ref_top1:+.2f}"
            agree = fmt(r.get("agreement_top1"), 2, " %")
        row = [r["model"], *([r.get("device") or "host"] if devices else []), r.get("precision", DASH),
               fmt_int(r.get("n")), fmt(r.get("top1"), 2, " %"), fmt(r.get("top5"), 2, " %"), delta, agree,
               fmt(r.get("cosine"), 5)]
        if several:
            row.append(short_hash(_data_hash(r), 8))
        table_rows.append(row)
    columns = [("model", False), *([("device", False)] if devices else []), ("precision", False), ("n", True),
               ("top-1", True), ("top-5", True), ("Δ top-1 vs ref (pt)", True), ("top-1 agreement", True),
               ("cosine", True)]
    if several:
        columns.append(("data", False))
    notes = [_data_note(r) for r in {_data_hash(r): r for r in rows}.values()]
    notes += [_device_note(r, rows) for r in rows if not on_host(r)]
    smallest = min(rows, key=lambda r: r.get("n") or 0)
    interval = wilson_interval(smallest.get("top1"), smallest.get("n"))
    if interval is not None and interval[1] - interval[0] >= 2.0:
        notes.append(f"n = {smallest.get('n')} images: top-1 {fmt(smallest.get('top1'), 2, ' %')} of "
                     f"{smallest['model']} means anything from {interval[0]:.1f} to {interval[1]:.1f} % (95 % "
                     "Wilson interval); evaluate more images before trusting differences of a few points.")
    return Section("accuracy", "Accuracy", make_table(columns, table_rows), notes=notes)


def _device_note(r: dict, rows: list[dict]) -> str:
    """A device's row next to the same model on the host: top-1 side by side, and how exactly they agree."""
    host = next((x for x in rows if on_host(x) and x.get("model") == r.get("model")
                 and _data_hash(x) == _data_hash(r)), None)
    side = f" (host {fmt(host.get('top1'), 2, ' %')})" if host else ""
    versus = r.get("versus_host") or {}
    exact = f"; {versus['note']}" if versus.get("note") else ""
    return (f"{r['model']} on {r.get('device')}: top-1 {fmt(r.get('top1'), 2, ' %')}{side} on the same "
            f"{fmt_int(r.get('n'))} images; agreement and cosine of device rows are against the same model on "
            f"the host{exact}.")


def _data_note(r: dict) -> str:
    d = r.get("data") or {}
    span = f" ({d['first_file']} … {d['last_file']})" if d.get("first_file") else ""
    skip = f", skip-first {d['skip_first']}" if d.get("skip_first") else ""
    return (f"data: `{d.get('dir', '?')}`, {d.get('count', '?')} images{span}{skip}, sha256 "
            f"{str(d.get('hash') or '?')[:12]}, labels {d.get('labels', '?')}")


def latency_section(report: dict) -> Section:
    from mnetdeploy.bench.int8_speed import int8_speed_notes

    rows = latency_rows(report)
    if not rows:
        benchable = [a for a in artifacts(report) if a.get("format") in ("tflite", "onnx")]
        where = quote(report.get("artifact_dir") or "DIR")
        hint = (f"run `mnetdeploy bench {where}`" if benchable or not artifacts(report) else
                f"export a .tflite/.onnx model into it, then run `mnetdeploy bench {where}`")
        return Section("latency", "Latency", missing=f"not measured: {hint}")
    baselines = {group_key(r): r for r in rows if r.get("precision") == "fp32"}
    table_rows = []
    for r in rows:
        lat = r["latency_ms"]
        base = baselines.get(group_key(r))
        if base is r:
            speedup = Cell("baseline")
        elif base and number(lat.get("p50")) and number(base["latency_ms"].get("p50")):
            speedup = Cell(f"{base['latency_ms']['p50'] / lat['p50']:.2f}×",
                           f"p50 of {base.get('model')} / p50 of {r.get('model')}")
        else:
            speedup = Cell(DASH, "no fp32 model of this format measured with the same device/runtime/threads")
        rss = fmt(r.get("peak_rss_mb"), 0)
        if number(r.get("model_rss_mb")) is not None:
            rss += f" (+{r['model_rss_mb']:.0f})"
        mean_std = (f"{fmt_ms(lat.get('mean'))} ± {fmt_ms(lat.get('std'))}"
                    if number(lat.get("mean")) is not None else DASH)
        table_rows.append([Path(str(r.get("model"))).name, r.get("precision", DASH), r.get("device", DASH),
                           runtime_label(r), fmt_int(r.get("threads")), fmt_int(r.get("runs")),
                           fmt_ms(lat.get("p50")), fmt_ms(lat.get("p90")), fmt_ms(lat.get("p99")), mean_std,
                           fmt_ms(lat.get("min")), fmt(r.get("init_ms"), 1), fmt(r.get("first_ms"), 2), rss,
                           speedup])
    columns = [("model", False), ("precision", False), ("device", False), ("runtime", False), ("threads", True),
               ("runs", True), ("p50", True), ("p90", True), ("p99", True), ("mean ± std", True), ("min", True),
               ("init", True), ("first", True), ("peak RSS MiB (+model)", True), ("speed-up vs fp32", True)]
    notes = ["milliseconds per inference (batch 1); init = load + allocate; first = the first inference; "
             "speed-up = fp32 p50 / p50 against the fp32 model of the same format, device, runtime and threads."]
    notes += int8_speed_notes(rows)
    return Section("latency", "Latency", make_table(columns, table_rows), notes=notes)


def int8_graph_section(report: dict) -> Section:
    """`--int8-graph auto`: the candidates timed on the target machine and which one was kept."""
    decision = report.get("int8_graph")
    if not isinstance(decision, dict) or not decision.get("candidates"):
        return Section("int8-graph", "int8 graph choice",
                       missing="not measured: a fixed --int8-graph was used (or no int8 TFLite model was made)")
    rows = []
    for c in decision["candidates"]:
        chosen = c.get("graph") == decision.get("chosen")
        rows.append([("▶ " if chosen else "") + str(c.get("graph")),
                     "passed" if c.get("passed") else Cell("failed", str(c.get("failure") or "")),
                     fmt_ms(c.get("p50_ms")), fmt(c.get("cosine"), 4), fmt(c.get("top1_agreement"), 1, " %"),
                     fmt_int(c.get("float_ops")), fmt_size(c.get("bytes"))])
    target = decision.get("target") or {}
    notes = [f"kept: {decision.get('chosen')} ({decision.get('rule')}); timed on {target.get('cpu_model') or '?'}, "
             f"{target.get('threads', 1)} thread(s), {decision.get('rounds', '?')} interleaved rounds, p50 = median "
             "of the rounds' medians; cosine and top-1 agreement against the float Keras model on the check images."]
    features = cpu_features_cell(target.get("cpu_features")).text
    notes.append(f"CPU features of that machine: {features}. On another CPU, quantize again there: the choice "
                 "is re-measured per machine.")
    return Section("int8-graph", "int8 graph choice", make_table(
        [("candidate", False), ("check", False), ("p50", True), ("cosine vs float", True), ("top-1 agree", True),
         ("float ops", True), ("size", True)], rows), notes=notes)


def calibration_section(report: dict) -> Section:
    integer = [a["file"] for a in artifacts(report) if a.get("precision") in ("int8", "int16x8")]
    per_file = {a["file"]: a["calibration"] for a in artifacts(report) if isinstance(a.get("calibration"), dict)}
    if not per_file and isinstance(report.get("calibration"), dict):
        per_file = {"(all quantized models)": report["calibration"]}
    if not per_file:
        text = (f"not recorded: the calibration set behind {', '.join(integer)} is unknown (only models made by "
                "mnetdeploy's quantize step record theirs)" if integer else
                "not applicable: no integer-quantized model in this directory")
        return Section("calibration", "Calibration", missing=text)
    rows = []
    for name, c in per_file.items():
        rows.append([name, c.get("source", DASH), c.get("directory") or DASH, fmt_int(c.get("count")),
                     short_hash(c.get("content_hash"))])
    return Section("calibration", "Calibration", make_table(
        [("model", False), ("source", False), ("directory", False), ("images", True), ("content sha256", False)],
        rows))


def warnings_section(report: dict) -> Section:
    items = report_warnings(report)
    if not items:
        return Section("warnings", "Warnings", notes=["none"])
    return Section("warnings", "Warnings", bullets=items)


# A quantized model this many top-1 points below its float reference (same images) gets a warning: the
# pretrained v1 0.25 loses 0.5 points when int8 is done well; several points mean something went wrong.
ACCURACY_DROP_WARNING = 1.0


def report_warnings(report: dict) -> list[str]:
    """Everything that makes a number in this report less trustworthy than it looks, most consequential first:
    accuracy and correctness (a wrong model), then what qualifies latencies (a noisy measurement)."""
    out: list[str] = accuracy_warnings(report)
    weights = (report.get("model") or {}).get("weights")
    if isinstance(weights, dict) and not weights.get("source"):
        out.append("the model has random weights (no trained weights given): accuracy is at chance level; "
                   "the numbers show the deployment pipeline, not a usable classifier")
    for a in artifacts(report):
        c = a.get("calibration")
        if isinstance(c, dict):
            if c.get("source") == "synthetic":
                out.append(f"{a['file']}: calibrated on SYNTHETIC images; int8 ranges fit real photos badly")
            for w in c.get("warnings") or []:
                out.append(f"{a['file']} calibration: {w}")
    for r in accuracy_rows(report):
        d = r.get("data") or {}
        if d.get("skipped"):
            out.append(f"eval of {r['model']}: {d['skipped']} unreadable image(s) skipped")
        if d.get("ignored") and f"eval data: {d['ignored']}" not in out:
            out.append(f"eval data: {d['ignored']}")
    by_text: dict[str, list[str]] = {}
    loads: list[tuple[float, str]] = []
    random_inputs, stale = [], []
    current = artifact_by_file(report)
    several_threads = len({r.get("threads") for r in latency_rows(report)}) > 1
    for r in latency_rows(report):
        name = Path(str(r.get("model"))).name
        run = f"{name} @ {r.get('threads')} thread{'s' if r.get('threads') != 1 else ''}" if several_threads else name
        for w in r.get("warnings") or []:
            load = re.match(r"load average ([0-9.]+) ", str(w))
            if load:  # one line for all of them: each result's own load figure would fill the top
                loads.append((float(load.group(1)), run))
            else:
                by_text.setdefault(str(w), []).append(run)
        if (r.get("inputs") or {}).get("kind") == "random":
            random_inputs.append(name)
        measured = ((r.get("environment") or {}).get("model") or {}).get("sha256")
        if name not in current:
            stale.append(f"{name}: benchmarked, but the file is no longer in the directory")
        elif measured and measured != current[name].get("sha256"):
            stale.append(f"{name}: the file changed after it was benchmarked (sha256 {measured[:12]} then, "
                         f"{str(current[name].get('sha256'))[:12]} now); re-run `mnetdeploy bench`")
    out += sorted(set(stale))
    if loads:
        low, high = min(x for x, _ in loads), max(x for x, _ in loads)
        span = f"{low:g}" if low == high else f"{low:g}-{high:g}"
        out.append(f"bench ({', '.join(_unique([name for _, name in loads]))}): load average {span} over the last "
                   "minute, more than the CPUs this process may run on: other processes competed for the CPU; "
                   "latencies are likely inflated and noisy (re-measure on a quieter machine: `mnetdeploy bench`)")
    for text, names in by_text.items():
        out.append(f"bench ({', '.join(_unique(names))}): {text}")
    if random_inputs:
        out.append(f"latency of {', '.join(_unique(random_inputs))} measured on seeded random inputs, not images "
                   "(pass `--inputs IMAGE_DIR` to `mnetdeploy bench` to time real data)")
    machines = {((r.get("environment") or {}).get("hostname"), (r.get("environment") or {}).get("cpu_model"))
                for r in latency_rows(report) if r.get("environment")}
    if len(machines) > 1:
        out.append(f"latencies come from {len(machines)} different machines: "
                   + "; ".join(f"{h} ({c})" for h, c in sorted(machines, key=str)) + "; compare rows with care")
    return _unique(out)


def accuracy_warnings(report: dict) -> list[str]:
    """Quantized models that lost ACCURACY_DROP_WARNING top-1 points or more against the float reference of
    the same images (model.keras, else an fp32 export: as the gate's max_accuracy_drop)."""
    out = []
    rows = accuracy_rows(report)
    order: dict[str | None, int] = {"keras": 0, "tflite": 1, "onnx": 2}
    for r in rows:
        top1 = number(r.get("top1"))
        if r.get("precision") == "fp32" or top1 is None:
            continue
        refs = sorted((x for x in rows if x.get("precision") == "fp32" and _data_hash(x) == _data_hash(r)
                       and on_host(x) and number(x.get("top1")) is not None),
                      key=lambda x: order.get(x.get("format"), 3))
        if refs and refs[0]["top1"] - top1 >= ACCURACY_DROP_WARNING:
            ref = refs[0]
            where = "" if on_host(r) else f" on {r.get('device')}"
            out.append(f"{r['model']}{where}: top-1 {top1:.1f} % is {ref['top1'] - top1:.1f} points below "
                       f"{ref['model']} ({ref['top1']:.1f} %) on the same {r.get('n', '?')} images: quantization "
                       "lost accuracy (try `mnetdeploy quantize --max-drop POINTS --eval-data DIR`, or more or "
                       "better calibration images)")
    return out


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


# ---------------------------------------------------------------------------------------- comparisons

def labels_for(reports: list[dict]) -> list[str]:
    """A display name per report; the same model name twice gets its directory's parent to tell them apart."""
    names = [title(r) for r in reports]
    out = []
    for name, r in zip(names, reports):
        if names.count(name) > 1:
            parent = Path(str(r.get("artifact_dir") or "?")).parent.name or "?"
            name = f"{name} ({parent})"
        out.append(name)
    if len(set(out)) < len(out):
        out = [f"{name} #{i + 1}" for i, name in enumerate(out)]
    return out


def comparison_rows(reports: list[dict], labels: list[str]) -> list[dict]:
    """One row per latency measurement across models, with the model's size and top-1."""
    out = []
    for label, report in zip(labels, reports):
        files, accuracy = artifact_by_file(report), top1_by_file(report)
        for r in latency_rows(report):
            name = Path(str(r.get("model"))).name
            acc = accuracy.get(name) or {}
            out.append({"label": label, "file": name, "precision": r.get("precision"), "device": r.get("device"),
                        "runtime": runtime_label(r), "threads": r.get("threads"),
                        "bytes": (files.get(name) or {}).get("bytes"), "p50": number(r["latency_ms"].get("p50")),
                        "p90": number(r["latency_ms"].get("p90")), "top1": number(acc.get("top1")),
                        "top5": number(acc.get("top5")), "data_hash": _data_hash(acc) if acc else None})
    return sorted(out, key=lambda x: (str(x["device"]), x["runtime"], number(x["threads"]) or 0,
                                      x["p50"] if x["p50"] is not None else math.inf))


def pareto(rows: list[dict]) -> set[int]:
    """Indices of rows no other row beats on both p50 and top-1, among rows measured under the same
    device/runtime/threads (only those are comparable)."""
    best = set()
    for i, a in enumerate(rows):
        if a["p50"] is None or a["top1"] is None:
            continue
        same = (a["device"], a["runtime"], a["threads"])
        peers = [b for b in rows if (b["device"], b["runtime"], b["threads"]) == same
                 and b["p50"] is not None and b["top1"] is not None]
        if not any(b["p50"] <= a["p50"] and b["top1"] >= a["top1"] and (b["p50"] < a["p50"] or b["top1"] > a["top1"])
                   for b in peers):
            best.add(i)
    return best


def comparison_sections(reports: list[dict], labels: list[str]) -> list[Section]:
    model_rows = []
    for label, r in zip(labels, reports):
        m = r.get("model") or {}
        weights = m.get("weights")
        trained = "random" if isinstance(weights, dict) and not weights.get("source") else (
            str(weights.get("source")) if isinstance(weights, dict) else "?")
        model_rows.append([label, m.get("arch", DASH), str(m.get("alpha", DASH)), str(m.get("resolution", DASH)),
                           fmt_int(m.get("params")), fmt_millions(m.get("macs")), trained,
                           fmt_int(len(artifacts(r))), fmt_int(len(latency_rows(r))), fmt_int(len(accuracy_rows(r)))])
    models = Section("models", "Models", make_table(
        [("model", False), ("arch", False), ("α", True), ("res", True), ("params", True), ("MACs", True),
         ("weights", False), ("files", True), ("latencies", True), ("accuracies", True)], model_rows))

    rows = comparison_rows(reports, labels)
    if not rows:
        trade = Section("tradeoff", "Speed / size / accuracy", missing="not measured: none of these models has a "
                        "latency yet; run `mnetdeploy bench DIR` on their directories")
        return [models, trade, comparison_warnings(reports, labels)]
    front = pareto(rows)
    table_rows = [[("★ " if i in front else "") + x["label"], x["file"], x["precision"] or DASH, x["device"] or DASH,
                   x["runtime"], fmt_int(x["threads"]), fmt_size(x["bytes"]), fmt_ms(x["p50"]), fmt_ms(x["p90"]),
                   fmt(x["top1"], 2, " %"), fmt(x["top5"], 2, " %")] for i, x in enumerate(rows)]
    notes = ["sorted by p50 within each device/runtime/threads; ★ = Pareto-optimal: no other row measured under "
             "the same device/runtime/threads is at least as fast and as accurate (and better in one)"] if front else [
             "sorted by p50 within each device/runtime/threads"]
    trade = Section("tradeoff", "Speed / size / accuracy", make_table(
        [("model", False), ("file", False), ("precision", False), ("device", False), ("runtime", False),
         ("threads", True), ("size", True), ("p50 ms", True), ("p90 ms", True), ("top-1", True), ("top-5", True)],
        table_rows), notes=notes)
    return [models, trade, comparison_warnings(reports, labels)]


def comparison_warnings(reports: list[dict], labels: list[str]) -> Section:
    out = []
    data = {h for r in comparison_rows(reports, labels) if (h := r["data_hash"])}
    if len(data) > 1:
        out.append(f"top-1 comes from {len(data)} different image sets: accuracies across models are not "
                   "directly comparable; evaluate all of them on the same --data")
    machines = {((r.get("environment") or {}).get("hostname"), (r.get("environment") or {}).get("cpu_model"))
                for rep in reports for r in latency_rows(rep) if r.get("environment")}
    if len(machines) > 1:
        out.append(f"latencies come from {len(machines)} different machines; compare rows measured on the same one")
    for label, r in zip(labels, reports):
        n = len(report_warnings(r))
        if n:
            out.append(f"{label}: {n} warning(s) of its own (see its report)")
    return Section("comparison-warnings", "Warnings", bullets=out) if out else Section(
        "comparison-warnings", "Warnings", notes=["none"])
