"""The `mnetdeploy` command line: thin commands over library functions (each importable from Python).

Heavy libraries (TensorFlow, ONNX Runtime) are imported inside the commands that need them, so `--help`
stays fast. Errors the user can fix print one line and exit non-zero; `--debug` shows the traceback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from mnetdeploy import __version__
from mnetdeploy.cli_options import config_from_options, config_option, config_options
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
        except OSError as e:
            # A read-only, full or forbidden place that no atomic writer named yet (fsutil names the ones
            # it writes): still the user's to fix, so one line with the path and exit 2.
            from mnetdeploy.fsutil import write_error

            error = write_error(e.filename, e) if e.filename and not debug else None
            if error is None:
                raise
            click.echo(f"error: {error}", err=True)
            ctx.exit(error.exit_code)
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


@cli.command(short_help="Build a MobileNet from a YAML config and/or options.")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@config_options("model.arch", "model.alpha")
@config_option("model.resolution", "--res")
@config_options("model.classes", "model.depth_multiplier", "model.dropout", "model.weights",
                "model.classifier_activation", "model.seed")
@config_option("output", "--out")
@config_option("name")
@click.option("--force", is_flag=True, help="Rebuild even when the inputs are unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.pass_context
def build(ctx, config, as_json, force, **_options):
    """Build a MobileNet from CONFIG (a YAML file) and/or options; options override the file."""
    from mnetdeploy.build import build as build_model
    from mnetdeploy.report.console import print_model_summary, progress, stderr_console, stdout_console

    cfg = config_from_options(ctx, config)
    with progress(stderr_console(), "building") as say:
        result = build_model(cfg, force=force, progress=say)
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


@cli.command(short_help="Per-layer params and MACs; how exports execute.")
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


@cli.command(name="eval", short_help="Top-1/top-5 accuracy of models on labelled images.")
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Take eval settings from this config.")
@config_options("eval.data", "eval.labels", "eval.label_offset", "eval.limit", "eval.skip_first")
@click.option("--reference", type=click.Path(dir_okay=False),
              help="Model to measure agreement against (default: the first MODEL when several are given).")
@config_option("eval.threads")
@click.option("--resolution", type=int, help="Input size, only for models whose input size is dynamic.")
@config_option("eval.device", "--device")
@config_options("bench.benchmark_binary", "bench.serial", "bench.adb", "bench.adb_server")
@config_option("bench.ssh_options", "--ssh-option", multiple=True)
@config_options("bench.run_timeout", "bench.lock_timeout")
@click.option("--json", "as_json", is_flag=True, help="Print a list of results as JSON on stdout.")
@click.pass_context
def eval_(ctx, models, config_path, reference, resolution, as_json, **_options):
    """Top-1/top-5 accuracy of Keras, TFLite or ONNX MODELs on labelled images, and their agreement.

    \b
    With --device, each .tflite (.onnx on Linux boards) runs there on the same preprocessed images and is
    compared with itself on this host: top-1 side by side, agreement, cosine, bit-identical outputs
    (see `pydoc mnetdeploy.devices.device_eval`)."""
    from mnetdeploy.evaluate import evaluate
    from mnetdeploy.report.console import eval_table, stdout_console

    cfg = config_from_options(ctx, config_path)
    e = cfg.eval
    if e.data is None:
        raise click.UsageError("Missing option '--data' (labelled images; or eval.data in --config).")
    if e.device != "host":
        if reference or resolution:
            raise UserError(f"--{'reference' if reference else 'resolution'}: not with --device, where each model "
                            "is compared with itself on this host")
        from mnetdeploy.devices.device_eval import evaluate_on_device
        from mnetdeploy.report.console import progress, stderr_console

        results = []
        with progress(stderr_console(), "evaluating on the device") as say:
            for model in models:
                results += evaluate_on_device(model, e.data, e.device, cfg.bench.settings(e.device, e.threads or 1),
                                              labels=e.labels, label_offset=e.label_offset, limit=e.limit,
                                              skip_first=e.skip_first, threads=e.threads, progress=say)
    else:
        results = evaluate(list(models), e.data, labels=e.labels, label_offset=e.label_offset, limit=e.limit,
                           skip_first=e.skip_first, reference=reference, threads=e.threads, resolution=resolution)
    # Models in artifact dirs keep their accuracy; a directory that cannot take it (read-only, full) must not
    # cost the finished evaluation: it is printed first, then the error.
    _, unstored = _store("eval", [r.to_dict() for r in results])
    if as_json:
        _emit_json([r.to_dict() for r in results])
        _raise_if(unstored)
        return
    con = stdout_console()
    con.print(eval_table(results))
    data = results[0].data
    con.print(f"data: {data['dir']}  {data['count']} images ({data['first_file']} .. {data['last_file']}, "
              f"skip-first {data['skip_first']})  sha256 {data['hash'][:16]}  labels {data['labels']}")
    if data["skipped"]:
        con.print(f"warning: {data['skipped']} unreadable image(s) skipped, e.g. {data['skipped_files'][0]}")
    if data.get("ignored"):
        con.print(f"note: {data['ignored']}", soft_wrap=True, highlight=False)
    for r in results:
        if r.versus_host:
            con.print(f"{Path(r.model).name}: {r.versus_host['note']}", soft_wrap=True, highlight=False)
    _raise_if(unstored)


def _store(kind: str, records: list[dict], out: str | None = None) -> tuple[list[Path], UserError | None]:
    """store_results, returning (not raising) the one-line error of an artifact directory that cannot take
    them, so the command can still print what it measured (and has written to --out)."""
    from mnetdeploy.results import store_results

    try:
        return store_results(kind, records), None
    except UserError as e:
        also = f" and in {out}" if out else ""
        return [], UserError(f"{e} (results printed above{also}, not kept with the model)")


def _raise_if(error: UserError | None) -> None:
    if error is not None:
        raise error


@cli.command(short_help="Latency and peak memory of .tflite/.onnx models.")
@click.argument("models", nargs=-1, required=True, type=click.Path())
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Take bench settings (devices and how to reach them, runs, ...) from this config.")
@config_option("bench.devices", "--device", multiple=True)
@config_options("bench.runtime", "bench.threads", "bench.warmup", "bench.runs", "bench.min_seconds",
                "bench.xnnpack", "bench.inputs", "bench.seed")
@click.option("--json", "as_json", is_flag=True, help="Print a list of results as JSON on stdout.")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the JSON list to FILE (atomically).")
@config_options("bench.benchmark_binary", "bench.serial", "bench.adb", "bench.adb_server")
@config_option("bench.ssh_options", "--ssh-option", multiple=True)
@config_options("bench.trials", "bench.cpu_mask", "bench.max_temp", "bench.cool_timeout", "bench.use_gpu",
                "bench.use_nnapi", "bench.keep", "bench.run_timeout", "bench.lock_timeout")
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
def bench(ctx, models, config_path, as_json, out, against, max_slowdown, max_rounds, max_seconds, **_options):
    """Latency (p50/p90/p99 over every run) and peak memory of .tflite/.onnx MODELS.

    MODELS are files or directories (every .tflite/.onnx in them, sorted). Each model runs in a fresh
    process, so its peak RSS is its own; the environment (CPU, governor, load, versions) is recorded.

    \b
    On a device (--device android, adb-linux, ssh://...): pinned to the big cores, after a thermal
    cool-down, with the device's facts recorded; see `pydoc mnetdeploy.devices.android`."""
    from mnetdeploy.bench import bench_progress, check_device, find_models, results_table, run_benchmark
    from mnetdeploy.fsutil import write_json
    from mnetdeploy.report.console import stderr_console, stdout_console

    b = config_from_options(ctx, config_path).bench
    for device in b.devices:
        check_device(device)
    if set(b.devices) == {"host"} and b.device_settings_given():
        flags = ", ".join("--" + name.replace("ssh_options", "ssh_option").replace("_", "-")
                          for name in b.device_settings_given())
        raise UserError(f"{flags}: device options; add --device android (or adb-linux, ssh://HOST)")
    notes: list[str] = []
    paths_by_device = {device: find_models(list(models), b.runtime, device, notes) for device in b.devices}
    for note in dict.fromkeys(notes):
        stderr_console().print(f"note: {note}", soft_wrap=True, highlight=False)
    paths = paths_by_device[b.devices[0]]
    if against:
        _bench_against(ctx, paths, against, b, max_slowdown=max_slowdown, max_rounds=max_rounds,
                       max_seconds=max_seconds, as_json=as_json, out=out)
        return
    results = []
    with bench_progress(stderr_console()) as track:
        for device in b.devices:
            for threads in b.threads:
                for path in paths_by_device[device]:
                    results.append(run_benchmark(path, device=device, progress=track(path),
                                                 settings=b.settings(device, threads)))
    dicts = [r.to_dict() for r in results]
    # Models inside artifact directories: kept there for report/gate. A place that cannot take them
    # (read-only, full) must not lose minutes of finished measurement: print them (and --out), then the error.
    unwritten = None
    if out:
        try:
            write_json(out, dicts)
        except UserError as e:
            unwritten = UserError(f"{e} (results printed above)")
    kept, unstored = _store("bench", dicts, None if unwritten or not out else out)
    unstored = unwritten or unstored
    if as_json:
        _emit_json(dicts)
        _raise_if(unstored)
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
    if out and not unwritten:
        con.print(f"wrote {out}")
    _raise_if(unstored)


def _bench_against(ctx, paths, against, b, *, max_slowdown, max_rounds, max_seconds, as_json, out) -> None:
    """`bench MODEL --against BASELINE`: the sequential A/B comparison (bench/sequential.py)."""
    from mnetdeploy.bench.sequential import compare_models
    from mnetdeploy.fsutil import write_json
    from mnetdeploy.report.console import progress, stderr_console, stdout_console

    if len(paths) != 1:
        raise UserError(f"--against compares one model with its baseline; got {len(paths)} models "
                        f"({', '.join(p.name for p in paths[:3])}...): pass one file")
    if len(b.devices) != 1 or len(b.threads) != 1:
        raise UserError("--against compares on one device with one thread count; give one --device and --threads")
    baseline = Path(against)
    if not baseline.is_file():
        raise UserError(f"--against {baseline}: no such file; pass the baseline .tflite/.onnx")
    device, threads = b.devices[0], b.threads[0]
    err = stderr_console()
    with progress(err, "A/B rounds") as say:
        result = compare_models(paths[0], baseline, max_slowdown=max_slowdown, max_rounds=max_rounds,
                                max_seconds=max_seconds, device=device, settings=b.settings(device, threads),
                                progress=say)
    data = result.to_dict()
    if out:
        write_json(out, data)
    if as_json:
        _emit_json(data)
    else:
        # compare_models runs at least MIN_ROUNDS rounds (max_rounds >= 3), so the interval is always known.
        assert result.minimum_detectable_slowdown is not None
        con = stdout_console()
        con.print(f"{paths[0].name} vs {baseline.name} ({device}, {threads} thread(s)): ratio {result.ratio:.3f} "
                  f"[{result.low:.3f}, {result.high:.3f}] at {100 * result.confidence:.0f} % over {result.rounds} "
                  f"rounds ({result.runs} runs, {result.seconds:.0f} s; {result.stopped}); limit "
                  f"{result.threshold:.3f}; detects slowdowns above "
                  f"{100 * result.minimum_detectable_slowdown:.0f} %", soft_wrap=True, highlight=False)
        con.print(f"A/B {result.verdict.upper()}", highlight=False)
    if result.verdict != "pass":
        ctx.exit(EXIT_FAILED if result.verdict == "fail" else EXIT_INCONCLUSIVE)


@cli.command(short_help="Check reports against budgets (and a baseline).")
@click.argument("reports", nargs=-1, required=True, type=click.Path())
@config_option("gate.budgets")
@click.option("--baseline", "baselines", multiple=True, type=click.Path(),
              help="Baseline report to compare latency distributions with (repeatable; matched by name).")
@config_option("gate.junit")
@click.option("--json", "as_json", is_flag=True, help="Print the checks and the verdict as JSON on stdout.")
@click.pass_context
def gate(ctx, reports, baselines, as_json, **_options):
    """Check REPORTs (report.json or artifact directories) against latency, size and accuracy budgets.

    Exit 0 when every check passes, 1 when a budget is broken (or, with --baseline, a clear slowdown beyond
    regression.max_slowdown), 2 on bad input, 3 when a latency comparison is too noisy to decide at
    max_slowdown (regression.on_inconclusive: warn | fail changes that). The decision rule is documented in
    mnetdeploy/gate.py."""
    from mnetdeploy.gate import check_notes, results_table, store_gate_results, write_junit
    from mnetdeploy.gate import gate as run_gate
    from mnetdeploy.report.console import stdout_console

    g = config_from_options(ctx).gate
    if g.budgets is None:
        raise click.UsageError("Missing option '--budgets' (the budgets YAML, e.g. configs/budgets.yaml).")
    junit = g.junit
    if junit and not Path(junit).resolve().parent.is_dir():  # a typo in a CI path should not grow a tree
        raise UserError(f"--junit {junit}: folder {Path(junit).parent} does not exist; create it or fix the path")
    result = run_gate(list(reports), g.budgets, list(baselines))
    if as_json:
        _emit_json(result.to_dict())
    else:
        con = stdout_console()
        con.print(results_table(result))
        for line in check_notes(result):
            con.print(line, soft_wrap=True, highlight=False)
        con.print(result.summary(), soft_wrap=True, highlight=False)
    try:  # the verdict kept with each gated model, for its report; never worth failing the gate over
        store_gate_results(result)
    except UserError as e:
        click.echo(f"warning: {e} (the gate verdict is not kept for the report)", err=True)
    if junit:  # after the verdict is printed: a JUnit path that cannot be written does not hide it
        write_junit(junit, result)
        if not as_json:
            con.print(f"wrote {junit}")
    if result.verdict != "pass":
        if as_json:
            click.echo(result.summary(), err=True)
        ctx.exit(EXIT_FAILED if result.verdict == "fail" else EXIT_INCONCLUSIVE)


@cli.command(short_help="Write report.json/.md/.html for artifact directories.")
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
    from mnetdeploy.report.render import report_warnings, title
    from mnetdeploy.report.write import write_reports

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


@cli.command(short_help="The whole job: build, quantize, eval, bench, report, gate.")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Redo every step even when its inputs are unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Print the steps and the gate verdict as JSON on stdout.")
def run(config, force, as_json):
    """The whole job: build, quantize/export, eval (when the config names data), bench, report, and gate
    (when it names budgets). Steps whose inputs did not change are reused. Exit 1 when the gate fails."""
    from mnetdeploy.config import load_config
    from mnetdeploy.pipeline import run_pipeline
    from mnetdeploy.report.console import pipeline_table, progress, stderr_console, stdout_console

    cfg = load_config(config)
    with progress(stderr_console(), "running") as say:
        result = run_pipeline(cfg, force=force, progress=say)
    if as_json:
        _emit_json(result.to_dict())
    else:
        con = stdout_console()
        con.print(pipeline_table(result.steps))
        con.print(f"report: {result.artifact_dir / 'report.html'}")
        from mnetdeploy.gate import load_notes

        gated = next((s.data.get("gate") for s in result.steps if s.name == "gate"), None) or {}
        for line in load_notes(gated.get("checks") or []):
            con.print(line, soft_wrap=True, highlight=False)
    if result.gate_passed is False:
        raise click.exceptions.Exit(EXIT_INCONCLUSIVE if result.gate_verdict == "inconclusive" else EXIT_FAILED)


@cli.command(short_help="Export to TFLite/ONNX, fp32 and int8, each checked.")
@click.argument("model_or_dir", required=False, type=click.Path())
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Take quantize settings from this config (flags override it).")
@config_option("quantize.calib", "--calib")
@config_options("quantize.num_calib", "quantize.seed", "quantize.formats", "quantize.precisions", "quantize.io",
                "quantize.onnx_calib", "quantize.int8_graph", "quantize.bias_correction", "quantize.rounding")
@config_option("quantize.keep_float", "--keep-float", multiple=True)
@config_options("quantize.analyze", "quantize.max_drop", "quantize.eval_data")
@config_option("output", "--out", help="A Keras model file is adopted into OUT/NAME (default: artifacts/<file "
                                       "stem>).")
@config_option("name", help="Artifact directory name for an adopted Keras model file (default: its file stem).")
@click.option("--force", is_flag=True, help="Reconvert even when the inputs are unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.pass_context
def quantize(ctx, model_or_dir, config_path, force, as_json, **_options):
    """Export MODEL_OR_DIR to TFLite and ONNX, fp32 and int8 by default, each checked against the float Keras
    model. Exit 1 when a check or --max-drop fails.

    \b
    MODEL_OR_DIR: an artifact directory (default: the default build), or your own Keras model file
    (.keras, or a Keras 2 .h5), e.g. a fine-tuned MobileNet with its own head: it is adopted into an
    artifact directory (--out/--name; params and MACs per layer read from its graph) and quantized there.
    It needs one fixed square RGB input and one (batch, classes) output."""
    from mnetdeploy.quantize import quantize as run_quantize
    from mnetdeploy.quantize.console import (
        analysis_table,
        artifacts_table,
        calibration_line,
        preparation_lines,
        recovery_table,
    )
    from mnetdeploy.quantize.step import adopted_target
    from mnetdeploy.report.console import progress, stderr_console, stdout_console

    cfg = config_from_options(ctx, config_path)
    options = cfg.quantize
    given = [flag for flag, key in (("--out", "output"), ("--name", "name")) if ctx.params.get(key) is not None]
    if given and adopted_target(model_or_dir) is None:
        raise UserError(f"{'/'.join(given)}: name where a Keras model file is adopted; MODEL_OR_DIR is not one "
                        "(an artifact directory is quantized where it is)")
    err = stderr_console()
    with progress(err, "quantizing") as say:
        result = run_quantize(model_or_dir, options, force=force, progress=say, output=cfg.output, name=cfg.name)
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
            err.print(f"error: --max-drop {options.max_drop:g} not reached within the layers tried; see the table",
                      highlight=False)
        raise click.exceptions.Exit(EXIT_FAILED)


@cli.command(short_help="Devices adb sees, for bench --device android.")
@click.option("--adb", "adb_path", help="The adb client (default $ADB, else adb on PATH).")
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


@cli.command(short_help="Every width x resolution x precision: table, frontier, fit.")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@config_option("model.arch")
@config_option("sweep.alphas", "--alpha")
@config_option("sweep.resolutions", "--res")
@config_options("quantize.precisions", "sweep.formats", "bench.threads")
@config_option("bench.devices", "--device", multiple=True)
@config_options("bench.pool", "eval.data", "eval.limit", "model.weights", "sweep.jobs", "sweep.cluster")
@click.option("--executor", metavar="MODULE:FACTORY",
              help="Build/quantize on another engine: FACTORY(jobs) returns an executor (e.g. a Dask client.map "
                   "or Ray adapter; see `python -c 'import mnetdeploy.sweep as s; help(s)'`).")
@config_options("sweep.budgets", "sweep.budget_latency_ms", "sweep.budget_size_kb", "sweep.min_top1", "bench.runs",
                "bench.min_seconds", "bench.warmup", "quantize.num_calib", "sweep.out", "sweep.max_points")
@click.option("--json", "as_json", is_flag=True, help="Print sweep.json's content on stdout.")
@click.pass_context
def sweep(ctx, config, executor, as_json, **_options):
    """Build, quantize, benchmark (and with --data and --weights evaluate) every alpha x res x precision x
    threads; print the table, the Pareto frontier, the recommendation under the budgets and the
    latency ~ MACs fit; write OUT/sweep.json, sweep.md and sweep.html.

    \b
    Resumable: rerun the same command after an interruption; finished points are skipped.
    Builds run in parallel with --jobs (or on Dask/Ray with --executor); benchmarks never share a device.
    """
    from mnetdeploy.report.console import progress, stderr_console, stdout_console
    from mnetdeploy.sweep import load_executor, run_sweep, sweep_plan
    from mnetdeploy.sweep_report import console_table

    base = config_from_options(ctx, config)
    grid, options = sweep_plan(base)
    if executor:
        if base.sweep.cluster:
            raise UserError("--executor and --cluster both say where points are prepared; give one")
        options.executor = load_executor(executor, options.jobs)
    with progress(stderr_console(), "sweeping") as say:
        state = run_sweep(base, grid, options, progress=say)
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
    if state.get("outside_grid"):
        con.print(f"warning: {state['outside_grid']}", soft_wrap=True, highlight=False)
    con.print(f"{state['accuracy']['note']}\nreport: {Path(options.out) / 'sweep.html'}", highlight=False)


def main() -> None:
    # TensorFlow's C++ logging would otherwise print banners on every command that loads it. oneDNN is off
    # by default because its reordered float sums make Keras outputs vary run to run at the 1e-6 level, and
    # Keras is the reference every export is checked against (set TF_ENABLE_ONEDNN_OPTS=1 to override).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    cli(prog_name="mnetdeploy")


if __name__ == "__main__":  # pragma: no cover
    main()
