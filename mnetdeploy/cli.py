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
from mnetdeploy.errors import EXIT_FAILED, UserError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):
        debug = ctx.params.get("debug") or os.environ.get("MNETDEPLOY_DEBUG") == "1"
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
    from mnetdeploy.report.console import layer_table, stderr_console, stdout_console, totals_lines

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
    con.print(layer_table(summary))
    for line in totals_lines(summary):
        con.print(line)
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
    from mnetdeploy.report.console import layer_table, stdout_console, totals_lines

    summary = describe(target)
    if as_json:
        _emit_json(summary)
        return
    con = stdout_console()
    con.print(layer_table(summary))
    for line in totals_lines(summary):
        con.print(line)


def main() -> None:
    # TensorFlow's C++ logging would otherwise print banners on every command that loads it. oneDNN is off
    # by default because its reordered float sums make Keras outputs vary run to run at the 1e-6 level, and
    # Keras is the reference every export is checked against (set TF_ENABLE_ONEDNN_OPTS=1 to override).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    cli(prog_name="mnetdeploy")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
