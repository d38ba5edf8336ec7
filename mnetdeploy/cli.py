"""The `mnetdeploy` command line: thin commands over library functions (each importable from Python).

Heavy libraries (TensorFlow, ONNX Runtime) are imported inside the commands that need them, so `--help`
stays fast. Errors the user can fix print one line and exit non-zero; `--debug` shows the traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from mnetdeploy import __version__
from mnetdeploy.errors import EXIT_FAILED, EXIT_INCONCLUSIVE, UserError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        debug = ctx.params.get("debug") or os.environ.get("MNETDEPLOY_DEBUG") == "1"
        if debug:
            os.environ["MNETDEPLOY_DEBUG"] = "1"  # library code (e.g. converters' output) reads it too
        try:
            return super().invoke(ctx)
        except UserError as e:
            if debug:
                raise
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("error: interrupted; nothing half-written was kept", err=True)
            ctx.exit(130)
        except Exception as e:  # a bug, not a user error: still one line unless --debug
            if debug:
                raise
            click.echo(f"error: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                       "(rerun with --debug for the traceback)", err=True)
            ctx.exit(EXIT_FAILED)


def _emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mnetdeploy")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """MobileNet from a YAML description to a measured, gated edge deployment.

    \b
    mnetdeploy build --alpha 0.5 --res 128     build a model (artifacts/<name>/)
    mnetdeploy info artifacts/v2_0.5_128       per-layer params and MACs
    """


@cli.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--arch", type=click.Choice(["v1", "v2", "v3-small", "v3-large"]),
              help="Architecture (default v2 when the config does not say).")
@click.option("--alpha", type=float, help="Width multiplier (e.g. 0.35, 0.5, 0.75, 1.0).")
@click.option("--res", type=int, help="Input resolution, a multiple of 32 (e.g. 128, 224).")
@click.option("--classes", type=int, help="Number of output classes (default 1000).")
@click.option("--depth-multiplier", type=int, help="v1 only: depthwise channel multiplier.")
@click.option("--dropout", type=float, help="Dropout rate before the classifier (default: the family's).")
@click.option("--weights", help="'imagenet' (Keras cache) or a .h5/.weights.h5/.keras file, loaded by layer name.")
@click.option("--seed", type=int, help="Seed of the weight initialisation (default 0).")
@click.option("--out", help="Parent folder of artifact directories (default artifacts).")
@click.option("--name", help="Artifact directory name (default from arch, alpha and resolution).")
@click.option("--force", is_flag=True, help="Rebuild even when the inputs are unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
def build(config, as_json, force, **options):
    """Build a MobileNet from CONFIG (a YAML file) and/or options; options override the file."""
    from mnetdeploy.build import build as build_model
    from mnetdeploy.config import CLI_KEYS, load_config
    from mnetdeploy.report.console import print_model_summary, stderr_console, stdout_console

    cfg = load_config(config, {CLI_KEYS[k]: v for k, v in options.items()})
    console = stderr_console()
    with console.status("building") as status:
        result = build_model(cfg, force=force, progress=lambda msg: status.update(msg))
    summary = dict(result.summary, artifact_dir=str(result.artifact_dir), reused=result.reused,
                   seconds=round(result.seconds, 3), notes=result.notes)
    if as_json:
        _emit_json(summary)
        return
    con = stdout_console()
    print_model_summary(con, summary)
    for note in result.notes:
        con.print(f"note: {note}")
    verb = "reused" if result.reused else f"built in {result.seconds:.1f} s"
    con.print(f"{verb}: {result.artifact_dir}")


@cli.command()
@click.argument("target", type=click.Path(exists=False))
@click.option("--json", "as_json", is_flag=True, help="Print as JSON on stdout.")
def info(target, as_json):
    """Per-layer params and MACs of a built model (artifact directory or file in it) or of a config YAML."""
    from mnetdeploy.info import describe
    from mnetdeploy.report.console import print_model_summary, stdout_console

    summary = describe(target)
    if as_json:
        _emit_json(summary)
        return
    print_model_summary(stdout_console(), summary)


@cli.command(name="eval")
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False),
              help="Image folder: class subfolders (ImageFolder) or images with a labels.csv.")
@click.option("--labels", type=click.Path(dir_okay=False), help="Labels CSV (default: DATA/labels.csv if present).")
@click.option("--label-offset", type=click.Choice(["auto", "0", "1"]), default="auto", show_default=True,
              help="1: output index 0 is 'background' (1001 classes). auto: from the model's output width.")
@click.option("--limit", type=int, help="Evaluate at most N images (after --skip-first), sorted by name.")
@click.option("--skip-first", type=int, default=0, show_default=True,
              help="Skip the first N images by name (e.g. the ones used to calibrate).")
@click.option("--reference", type=click.Path(dir_okay=False),
              help="Model to measure agreement against (default: the first MODEL when several are given).")
@click.option("--threads", type=int, help="Inference threads for TFLite/ONNX (default: the runtime's choice).")
@click.option("--resolution", type=int, help="Input size, only for models whose input size is dynamic.")
@click.option("--json", "as_json", is_flag=True, help="Print a list of results as JSON on stdout.")
def eval_(models, data_dir, labels, label_offset, limit, skip_first, reference, threads, resolution, as_json):
    """Top-1/top-5 accuracy of Keras, TFLite or ONNX MODELs on labelled images, and their agreement."""
    from mnetdeploy.evaluate import evaluate
    from mnetdeploy.report.console import eval_table, stdout_console

    from mnetdeploy.results import store_results

    results = evaluate(list(models), data_dir, labels=labels, label_offset=label_offset, limit=limit,
                       skip_first=skip_first, reference=reference, threads=threads, resolution=resolution)
    store_results("eval", [r.to_dict() for r in results])  # models in artifact dirs keep their accuracy
    if as_json:
        _emit_json([r.to_dict() for r in results])
        return
    con = stdout_console()
    con.print(eval_table(results))
    data = results[0].data
    con.print(f"data: {data['dir']}  {data['count']} images ({data['first_file']} .. {data['last_file']}, "
              f"skip-first {data['skip_first']})  sha256 {data['hash'][:16]}  labels {data['labels']}")
    if data["skipped"]:
        con.print(f"warning: {data['skipped']} unreadable image(s) skipped, e.g. {data['skipped_files'][0]}")


@cli.command()
@click.argument("models", nargs=-1, required=True, type=click.Path())
@click.option("--device", default="host", show_default=True,
              help="host (this machine), android[:SERIAL] (benchmark_model over adb), adb-linux[:SERIAL] or "
                   "ssh://[USER@]HOST[:PORT] (Linux boards: the Python runner, or benchmark_model if given).")
@click.option("--runtime", type=click.Choice(["auto", "litert", "onnxruntime"]), default="auto", show_default=True,
              help="auto: .tflite on LiteRT, .onnx on ONNX Runtime. Naming one keeps only its models in directories.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Threads given to the runtime (LiteRT/XNNPACK num_threads, ORT intra-op threads).")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True,
              help="Unmeasured runs after the first inference.")
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True,
              help="At least this many measured runs ...")
@click.option("--min-seconds", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="... and at least this long: runs stop at whichever comes later.")
@click.option("--no-xnnpack", is_flag=True, help="LiteRT: plain builtin kernels instead of the XNNPACK delegate.")
@click.option("--inputs", type=click.Path(file_okay=False),
              help="Folder of images to cycle through (first 50 by name; default: seeded random inputs).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--json", "as_json", is_flag=True, help="Print a list of results as JSON on stdout.")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the JSON list to FILE (atomically).")
@click.option("--benchmark-binary", type=click.Path(dir_okay=False),
              help="Device: LiteRT's benchmark_model built for it (e.g. android_aarch64_benchmark_model).")
@click.option("--serial", envvar="ANDROID_SERIAL", help="Device: adb serial (default $ANDROID_SERIAL, else the only one).")
@click.option("--adb", "adb_path", envvar="ADB", help="Device: the adb client (default $ADB, else adb on PATH).")
@click.option("--adb-server", metavar="HOST:PORT",
              help="Device: a (remote) adb server, as adb -H HOST -P PORT (default: $ANDROID_ADB_SERVER_PORT).")
@click.option("--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE",
              help="Device: passed to ssh as -o KEY=VALUE (repeatable), e.g. IdentityFile=~/.ssh/board.")
@click.option("--trials", type=click.IntRange(min=1), default=1, show_default=True,
              help="Device: repeat the benchmark K times (each after cool-down); K trial medians form samples_ms.")
@click.option("--cpu-mask", metavar="HEX|none", help="Device: taskset mask (default: the big cores).")
@click.option("--max-temp", type=click.FloatRange(min=0, min_open=True), default=45.0, show_default=True,
              help="Device: wait before each trial until the CPU thermal zones are at most this many °C ...")
@click.option("--cool-timeout", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="... for at most this many seconds (a device still hot is a warning in the result).")
@click.option("--use-gpu", is_flag=True, help="Device: benchmark_model --use_gpu=true.")
@click.option("--use-nnapi", is_flag=True, help="Device: benchmark_model --use_nnapi=true.")
@click.option("--keep", is_flag=True, help="Device: keep the model on the device (the tool stays cached anyway).")
@click.option("--run-timeout", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True,
              help="Device: seconds one benchmark run may take before it counts as hung.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=600.0, show_default=True,
              help="Device: seconds to wait while another benchmark (any host) uses the device.")
@click.option("--against", type=click.Path(dir_okay=False), metavar="BASELINE_MODEL",
              help="A/B: compare the one MODEL with this baseline file in alternating rounds until a slowdown "
                   "beyond --max-slowdown is clearly there or clearly not (exit 0 pass, 1 fail, 3 inconclusive).")
@click.option("--max-slowdown", type=click.FloatRange(min=0, min_open=True), default=0.10, show_default=True,
              help="A/B: the slowdown to decide about (0.10 = 10 %).")
@click.option("--max-rounds", type=click.IntRange(min=3), default=20, show_default=True,
              help="A/B: at most this many rounds (each benchmarks both models once) ...")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True,
              help="... and stop starting rounds after this many seconds; undecided by then: inconclusive.")
@click.pass_context
def bench(ctx, models, device, runtime, threads, warmup, runs, min_seconds, no_xnnpack, inputs, seed, as_json, out,
          against, max_slowdown, max_rounds, max_seconds, **device_options):
    """Latency (p50/p90/p99 over every run) and peak memory of .tflite/.onnx MODELS.

    MODELS are files or directories (every .tflite/.onnx in them, sorted). Each model runs in a fresh
    process, so its peak RSS is its own; the environment (CPU, governor, load, versions) is recorded.

    \b
    On a device (--device android, adb-linux, ssh://...): pinned to the big cores, after a thermal
    cool-down, with the device's facts recorded; see `pydoc mnetdeploy.devices.android`."""
    from mnetdeploy.bench import bench_progress, check_device, find_models, results_table, run_benchmark
    from mnetdeploy.fsutil import write_json
    from mnetdeploy.report.console import stderr_console, stdout_console
    from mnetdeploy.results import store_results

    check_device(device)
    extra = _device_settings(device, device_options)
    notes: list[str] = []
    paths = find_models(list(models), runtime, device, notes)
    for note in notes:
        stderr_console().print(f"note: {note}", soft_wrap=True, highlight=False)
    if against:
        _bench_against(ctx, paths, against, device=device, runtime=runtime, threads=threads, warmup=warmup,
                       runs=runs, min_seconds=min_seconds, xnnpack=not no_xnnpack, inputs=inputs, seed=seed,
                       max_slowdown=max_slowdown, max_rounds=max_rounds, max_seconds=max_seconds,
                       as_json=as_json, out=out, extra=extra)
        return
    results = []
    with bench_progress(stderr_console()) as track:
        for path in paths:
            results.append(run_benchmark(path, device=device, progress=track(path), runtime=runtime,
                                         threads=threads, warmup=warmup, runs=runs, min_seconds=min_seconds,
                                         xnnpack=not no_xnnpack, inputs=inputs, seed=seed, **extra))
    dicts = [r.to_dict() for r in results]
    if out:
        write_json(out, dicts)
    kept = store_results("bench", dicts)  # models inside artifact directories: kept there for report/gate
    if as_json:
        _emit_json(dicts)
        return
    con = stdout_console()
    con.print(results_table(results))
    for r in results:
        for warning in r.warnings:
            con.print(f"warning: {Path(r.model).name}: {warning}", soft_wrap=True, highlight=False)
    from mnetdeploy.bench.int8_speed import int8_speed_notes

    for note in int8_speed_notes(dicts):
        con.print(f"note: {note}", soft_wrap=True, highlight=False)
    for path in kept:
        con.print(f"kept in {path}", highlight=False)
    if out:
        con.print(f"wrote {out}")


def _bench_against(ctx, paths, against, *, device, runtime, threads, warmup, runs, min_seconds, xnnpack, inputs,
                   seed, max_slowdown, max_rounds, max_seconds, as_json, out, extra) -> None:
    """`bench MODEL --against BASELINE`: the sequential A/B comparison (bench/sequential.py)."""
    from mnetdeploy.bench.sequential import compare_models
    from mnetdeploy.fsutil import write_json
    from mnetdeploy.report.console import stderr_console, stdout_console

    if len(paths) != 1:
        raise UserError(f"--against compares one model with its baseline; got {len(paths)} models "
                        f"({', '.join(p.name for p in paths[:3])}...): pass one file")
    baseline = Path(against)
    if not baseline.is_file():
        raise UserError(f"--against {baseline}: no such file; pass the baseline .tflite/.onnx")
    err = stderr_console()
    with err.status("A/B rounds") as status:
        result = compare_models(paths[0], baseline, max_slowdown=max_slowdown, max_rounds=max_rounds,
                                max_seconds=max_seconds, device=device, threads=threads, runs=runs,
                                min_seconds=min_seconds, runtime=runtime, warmup=warmup, xnnpack=xnnpack,
                                inputs=inputs, seed=seed, progress=status.update, **extra)
    data = result.to_dict()
    if out:
        write_json(out, data)
    if as_json:
        _emit_json(data)
    else:
        con = stdout_console()
        con.print(f"{paths[0].name} vs {baseline.name} ({device}, {threads} thread(s)): ratio {result.ratio:.3f} "
                  f"[{result.low:.3f}, {result.high:.3f}] at {100 * result.confidence:.0f} % over {result.rounds} "
                  f"rounds ({result.runs} runs, {result.seconds:.0f} s; {result.stopped}); limit "
                  f"{result.threshold:.3f}; detects slowdowns above "
                  f"{100 * result.minimum_detectable_slowdown:.0f} %", soft_wrap=True, highlight=False)
        con.print(f"A/B {result.verdict.upper()}", highlight=False)
    if result.verdict != "pass":
        ctx.exit(EXIT_FAILED if result.verdict == "fail" else EXIT_INCONCLUSIVE)


_DEVICE_DEFAULTS = {"benchmark_binary": None, "serial": None, "adb_path": None, "adb_server": None,
                    "ssh_options": (), "trials": 1, "cpu_mask": None, "max_temp": 45.0, "cool_timeout": 120.0,
                    "use_gpu": False, "use_nnapi": False, "keep": False, "run_timeout": 600.0,
                    "lock_timeout": 600.0}


def _device_settings(device: str, options: dict) -> dict:
    """The bench options that only a device takes, as run_benchmark settings; an error on --device host."""
    if device == "host":
        # $ANDROID_SERIAL / $ADB fill --serial / --adb by themselves; only options typed for a device count.
        ctx = click.get_current_context()
        given = [name for name, value in options.items() if value != _DEVICE_DEFAULTS[name]
                 and ctx.get_parameter_source(name) is not click.core.ParameterSource.ENVIRONMENT]
        if given:
            flags = ", ".join("--" + name.replace("_path", "").replace("ssh_options", "ssh_option").replace("_", "-")
                              for name in given)
            raise UserError(f"{flags}: device options; add --device android (or adb-linux, ssh://HOST)")
        return {}
    settings = dict(options, adb=options["adb_path"], ssh_options=tuple(options["ssh_options"]))
    del settings["adb_path"]
    return settings


@cli.command()
@click.argument("reports", nargs=-1, required=True, type=click.Path())
@click.option("--budgets", "budgets_path", required=True, type=click.Path(dir_okay=False),
              help="Budgets YAML (see configs/budgets.yaml).")
@click.option("--baseline", "baselines", multiple=True, type=click.Path(),
              help="Baseline report to compare latency distributions with (repeatable; matched by name).")
@click.option("--junit", type=click.Path(dir_okay=False), help="Write JUnit XML, one test case per check.")
@click.option("--json", "as_json", is_flag=True, help="Print the checks and the verdict as JSON on stdout.")
@click.pass_context
def gate(ctx, reports, budgets_path, baselines, junit, as_json):
    """Check REPORTs (report.json or artifact directories) against latency, size and accuracy budgets.

    Exit 0 when every check passes, 1 when a budget is broken (or, with --baseline, a clear slowdown beyond
    regression.max_slowdown), 2 on bad input, 3 when a latency comparison is too noisy to decide at
    max_slowdown (regression.on_inconclusive: warn | fail changes that). The decision rule is documented in
    mnetdeploy/gate.py."""
    from mnetdeploy.gate import check_notes, gate as run_gate, results_table, write_junit
    from mnetdeploy.report.console import stdout_console

    result = run_gate(list(reports), budgets_path, list(baselines))
    if junit:
        write_junit(junit, result)
    if as_json:
        _emit_json(result.to_dict())
    else:
        con = stdout_console()
        con.print(results_table(result))
        for line in check_notes(result):
            con.print(line, soft_wrap=True, highlight=False)
        con.print(result.summary(), soft_wrap=True, highlight=False)
        if junit:
            con.print(f"wrote {junit}")
    if result.verdict != "pass":
        if as_json:
            click.echo(result.summary(), err=True)
        ctx.exit(EXIT_FAILED if result.verdict == "fail" else EXIT_INCONCLUSIVE)


@cli.command()
@click.argument("targets", nargs=-1, required=True, type=click.Path(), metavar="DIR_OR_JSON...")
@click.option("--out", "out_dir", default="reports", show_default=True, type=click.Path(file_okay=False),
              help="With several inputs: where comparison.md and comparison.html go.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as a JSON list on stdout.")
def report(targets, out_dir, as_json):
    """Write report.json, report.md and report.html (tables, latency and trade-off plots) per model.

    \b
    An artifact directory: the report is assembled afresh from what build/quantize/eval/bench recorded
    there and written into it. A report.json: re-rendered as it is (report.md/.html next to it, no
    rebuild). Several inputs: also a side-by-side comparison in --out (comparison.md, comparison.html)."""
    from mnetdeploy.report.console import stdout_console
    from mnetdeploy.report.render import report_warnings, title, write_reports

    items, comparison = write_reports(list(targets), out_dir)
    if as_json:
        _emit_json([item.report for item in items])
        return
    con = stdout_console()
    for item in items:
        verb = "assembled" if item.rebuilt else "re-rendered"
        warnings = len(report_warnings(item.report))
        note = f"; {warnings} warning(s), see report.md" if warnings else ""
        con.print(f"{title(item.report)}: {verb}{note}", highlight=False)
        for path in item.files:
            con.print(f"  wrote {path}", highlight=False)
    for path in comparison:
        con.print(f"wrote {path}", highlight=False)


@cli.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Redo every step even when its inputs are unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Print the steps and the gate verdict as JSON on stdout.")
def run(config, force, as_json):
    """The whole job: build, quantize/export, eval (when the config names data), bench, report, and gate
    (when it names budgets). Steps whose inputs did not change are reused. Exit 1 when the gate fails."""
    from mnetdeploy.config import load_config
    from mnetdeploy.pipeline import run_pipeline
    from mnetdeploy.report.console import pipeline_table, stderr_console, stdout_console

    cfg = load_config(config)
    with stderr_console().status("running") as status:
        result = run_pipeline(cfg, force=force, progress=lambda msg: status.update(msg))
    if as_json:
        _emit_json(result.to_dict())
    else:
        con = stdout_console()
        con.print(pipeline_table(result.steps))
        con.print(f"report: {result.artifact_dir / 'report.html'}")
    if result.gate_passed is False:
        raise click.exceptions.Exit(EXIT_INCONCLUSIVE if result.gate_verdict == "inconclusive" else EXIT_FAILED)


@cli.command()
@click.argument("model_or_dir", required=False, type=click.Path())
@click.option("--calib", "calib_dir", type=click.Path(),
              help="Folder of calibration images (searched recursively). Default: calibration/default.yaml, "
                   "else synthetic images with a warning.")
@click.option("--num-calib", type=int, default=100, show_default=True, help="Calibration images to use.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the calibration image choice.")
@click.option("--formats", default="tflite,onnx", show_default=True, help="Comma-separated: tflite, onnx.")
@click.option("--precisions", default="fp32,int8", show_default=True,
              help="Comma-separated: fp32, fp16, dynamic, int8 (ONNX has no dynamic: skipped with a note).")
@click.option("--io", type=click.Choice(["float", "int8", "uint8"]), default="int8", show_default=True,
              help="Input/output type of the int8 TFLite model.")
@click.option("--onnx-calib", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax",
              show_default=True, help="ONNX Runtime activation calibration method.")
@click.option("--int8-graph", type=click.Choice(["auto", "integer-only", "float-islands", "cpu"]), default="auto",
              show_default=True,
              help="int8 TFLite graph: auto times the candidates on this machine and keeps the fastest that "
                   "passes its check; integer-only makes every op int8 (NPUs, DSPs, microcontrollers); "
                   "float-islands keeps float only ops XNNPACK has no int8 kernel for; cpu also the stem and "
                   "ops fed by them (rules measured on an AMX CPU).")
@click.option("--bias-correction/--no-bias-correction", default=True, show_default=True,
              help="Correct each conv's bias for the mean shift its int8 weights cause.")
@click.option("--rounding", type=click.Choice(["nearest", "adaptive"]), default="nearest", show_default=True,
              help="int8 weight rounding: to nearest, or data-aware (slower; see docs in quantize/rounding.py).")
@click.option("--keep-float", multiple=True, metavar="LAYER",
              help="Keras layer to keep in float in the int8 models (repeat, or comma-separate).")
@click.option("--analyze", is_flag=True, help="Write a per-layer int8 error table (quant_analysis.json).")
@click.option("--max-drop", type=float, metavar="POINTS",
              help="Keep the most harmful layers in float until the top-1 drop on --eval-data is within POINTS.")
@click.option("--eval-data", type=click.Path(), help="Labelled images for --max-drop (calibration images excluded).")
@click.option("--force", is_flag=True, help="Reconvert even when the inputs are unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def quantize(model_or_dir, calib_dir, num_calib, seed, formats, precisions, io, onnx_calib, int8_graph,
             bias_correction, rounding, keep_float, analyze, max_drop, eval_data, force, as_json):
    """Export MODEL_OR_DIR (an artifact directory; default: the default build) to TFLite and ONNX, fp32 and
    int8 by default, each checked against the float Keras model. Exit 1 when a check or --max-drop fails."""
    from mnetdeploy.quantize import QuantizeOptions
    from mnetdeploy.quantize import quantize as run_quantize
    from mnetdeploy.quantize.console import (analysis_table, artifacts_table, calibration_line, preparation_lines,
                                             recovery_table)
    from mnetdeploy.report.console import stderr_console, stdout_console

    def split(text):
        return tuple(v.strip() for v in text.split(",") if v.strip())

    options = QuantizeOptions(formats=split(formats), precisions=split(precisions), io=io, onnx_calib=onnx_calib,
                              int8_graph=int8_graph, bias_correction=bias_correction, rounding=rounding,
                              keep_float=tuple(v for item in keep_float for v in split(item)))
    err = stderr_console()
    with err.status("quantizing") as status:
        result = run_quantize(model_or_dir, options, calib_dir=calib_dir, num_calib=num_calib, seed=seed,
                              force=force, analyze=analyze, eval_data=eval_data, max_drop=max_drop,
                              progress=lambda msg: status.update(msg))
    data = result.to_dict()
    for warning in result.warnings:
        err.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
    if as_json:
        _emit_json(data)
    else:
        con = stdout_console()
        con.print(artifacts_table(data))
        for line in [calibration_line(data), *preparation_lines(data)]:
            if line:
                con.print(line, highlight=False)
        if result.analysis:
            con.print(analysis_table(result.analysis))
        if result.recovery:
            con.print(recovery_table(result.recovery))
        for note in result.notes:
            con.print(f"note: {note}", highlight=False)
        con.print(f"{'reused' if result.reused else f'done in {result.seconds:.1f} s'}: {result.artifact_dir}",
                  highlight=False)
    if result.recovery and not all(f["met"] for f in result.recovery["formats"].values()):
        if not as_json:
            err.print(f"error: --max-drop {max_drop:g} not reached within the layers tried; see the table",
                      highlight=False)
        raise click.exceptions.Exit(EXIT_FAILED)


@cli.command()
@click.option("--adb", "adb_path", envvar="ADB", help="The adb client (default $ADB, else adb on PATH).")
@click.option("--adb-server", metavar="HOST:PORT",
              help="A (remote) adb server, as adb -H HOST -P PORT (default: $ANDROID_ADB_SERVER_PORT).")
@click.option("--json", "as_json", is_flag=True, help="Print the devices as a JSON list on stdout.")
def devices(adb_path, adb_server, as_json):
    """Devices adb sees: serial, state, model, ABI, Android version and SoC (for `bench --device android`)."""
    from rich import box
    from rich.table import Table

    from mnetdeploy.devices.adb import describe_devices
    from mnetdeploy.report.console import stdout_console

    found = describe_devices(adb_path, adb_server)
    if as_json:
        _emit_json(found)
        return
    con = stdout_console()
    if not found:
        con.print("no devices (adb lists none): connect one with USB debugging enabled, or `adb connect HOST:PORT`")
        return
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False)
    for column in ("serial", "state", "model", "ABI", "Android", "SoC"):
        table.add_column(column, overflow="fold")
    for d in found:
        android = d["android_version"] or ("Linux " + (d["machine"] or "") if d["os"] == "linux" else "-")
        table.add_row(d["serial"], d["state"], d["model"] or "-", d["abi"] or d["machine"] or "-", android,
                      d["soc"] or "-")
    con.print(table)
    for d in found:
        if d["note"]:
            con.print(f"{d['serial']}: {d['note']}", soft_wrap=True, highlight=False)


@cli.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--arch", type=click.Choice(["v1", "v2", "v3-small", "v3-large"]),
              help="Architecture (default: the config's, else v2).")
@click.option("--alpha", "alphas", default="0.35,0.5,0.75,1.0", show_default=True, help="Comma-separated widths.")
@click.option("--res", "resolutions", default="96,128,160,192,224", show_default=True,
              help="Comma-separated resolutions (multiples of 32).")
@click.option("--precisions", default="fp32,int8", show_default=True, help="Comma-separated TFLite precisions.")
@click.option("--threads", default="1", show_default=True, help="Comma-separated benchmark thread counts.")
@click.option("--device", "devices", multiple=True, metavar="host|android[:SERIAL]|ssh://HOST",
              help="Benchmark device (repeatable; default host). Never two models at once on one device.")
@click.option("--data", type=click.Path(file_okay=False), help="Labelled images: measure top-1 (needs --weights).")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate at most N images of --data.")
@click.option("--weights", help="'imagenet' or a weights file; without it accuracy is meaningless (random weights).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Build/quantize this many points in parallel (spawned processes).")
@click.option("--executor", metavar="MODULE:FACTORY",
              help="Build/quantize on another engine: FACTORY(jobs) returns an executor (e.g. a Dask client.map "
                   "or Ray adapter; see `python -c 'import mnetdeploy.sweep as s; help(s)'`).")
@click.option("--budget-latency-ms", type=click.FloatRange(min=0, min_open=True), help="Max p50 (ms).")
@click.option("--budget-size-kb", type=click.FloatRange(min=0, min_open=True), help="Max model file size (KB).")
@click.option("--min-top1", type=click.FloatRange(0, 100), help="Min top-1 (%).")
@click.option("--runs", type=click.IntRange(min=1), help="Benchmark runs per model (default: the config's).")
@click.option("--min-seconds", type=click.FloatRange(min=0), help="Minimum benchmark time per model.")
@click.option("--warmup", type=click.IntRange(min=0), help="Warm-up runs per model.")
@click.option("--num-calib", type=click.IntRange(min=1), help="int8 calibration images.")
@click.option("--out", help="Sweep folder: sweep.json/.md/.html and models/ (default sweeps/<arch>).")
@click.option("--max-points", type=click.IntRange(min=0), help="Stop after N new points (rerun to resume).")
@click.option("--json", "as_json", is_flag=True, help="Print sweep.json's content on stdout.")
def sweep(config, arch, alphas, resolutions, precisions, threads, devices, data, limit, weights, jobs, executor,
          budget_latency_ms, budget_size_kb, min_top1, runs, min_seconds, warmup, num_calib, out, max_points,
          as_json):
    """Build, quantize, benchmark (and with --data and --weights evaluate) every alpha x res x precision x
    threads; print the table, the Pareto frontier, the recommendation under the budgets and the
    latency ~ MACs fit; write OUT/sweep.json, sweep.md and sweep.html.

    \b
    Resumable: rerun the same command after an interruption; finished points are skipped.
    Builds run in parallel with --jobs (or on Dask/Ray with --executor); benchmarks never share a device.
    """
    from mnetdeploy.config import load_config
    from mnetdeploy.report.console import stderr_console, stdout_console
    from mnetdeploy.sweep import Budgets, Grid, SweepOptions, load_executor, parse_list, run_sweep
    from mnetdeploy.sweep_report import console_table

    base = load_config(config, {"model.arch": arch, "model.weights": weights, "eval.data": data,
                                "eval.limit": limit, "bench.runs": runs, "bench.min_seconds": min_seconds,
                                "bench.warmup": warmup, "quantize.num_calib": num_calib})
    grid = Grid(base.model.arch, parse_list(alphas, float, "--alpha"), parse_list(resolutions, int, "--res"),
                parse_list(precisions, str, "--precisions"), parse_list(threads, int, "--threads"),
                tuple(devices) or tuple(base.bench.devices))
    options = SweepOptions(out=out or str(Path("sweeps") / grid.arch), jobs=jobs, max_points=max_points,
                           executor=load_executor(executor, jobs) if executor else None,
                           budgets=Budgets(budget_latency_ms, budget_size_kb, min_top1))
    with stderr_console().status("sweeping") as status:
        state = run_sweep(base, grid, options, progress=lambda msg: status.update(msg))
    if as_json:
        _emit_json(state)
        return
    con = stdout_console()
    con.print(console_table(state))
    con.print(f"recommendation: {state['recommendation']['reason']}", soft_wrap=True, highlight=False)
    for f in state["fit"]:
        con.print(f"fit {f['precision']} {f['threads']}thr {f['device']}: p50 = {f['a_ms_per_mmac']:.5f} ms/M MACs "
                  f"* MACs + {f['b_ms']:.3f} ms (R2 {f['r2']:.3f}, {len(f['departures'])} departure(s)); "
                  "mean residual by alpha: " + ", ".join(f"{a} {v:+.0f} %"
                                                         for a, v in f["residual_pct_by_alpha"].items()),
                  highlight=False)
    con.print(f"{state['accuracy']['note']}\nreport: {Path(options.out) / 'sweep.html'}", highlight=False)


def main() -> None:
    # TensorFlow's C++ logging would otherwise print banners on every command that loads it. oneDNN is off
    # by default because its reordered float sums make Keras outputs vary run to run at the 1e-6 level, and
    # Keras is the reference every export is checked against (set TF_ENABLE_ONEDNN_OPTS=1 to override).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    cli(prog_name="mnetdeploy")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
