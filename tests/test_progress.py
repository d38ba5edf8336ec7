"""Progress without a terminal (CI logs, pipes): long commands print plain lines instead of staying silent."""

from __future__ import annotations

import io

from click.testing import CliRunner
from rich.console import Console

from mnetdeploy.cli import cli
from mnetdeploy.report.console import progress


def _lines(buffer: io.StringIO) -> list[str]:
    return buffer.getvalue().splitlines()


def test_without_a_terminal_each_step_is_a_line_counters_wait_and_the_heartbeat_says_still():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    # every=3600: the heartbeat thread never fires by itself in this test; beat() is called directly.
    with progress(console, "quantizing", every=3600) as say:
        say("loading the Keras model")
        say("loading the Keras model")          # repeated: no new line
        say("weight statistics: image 1/100")
        say("weight statistics: image 2/100")   # a counter: waits for the heartbeat
        say("weight statistics: image 3/100")
        say.__self__.beat()
        say("rounding weights: conv_dw_1")
        say("rounding weights: conv_pw_1")      # the same subject, another layer: waits too
        say("converting model_int8.tflite")
    lines = _lines(buffer)
    assert lines[:3] == ["... loading the Keras model", "... weight statistics: image 1/100", lines[2]]
    assert lines[2].startswith("... still weight statistics: image 3/100 (") and lines[2].endswith(" s)")
    assert lines[3:] == ["... rounding weights: conv_dw_1", "... converting model_int8.tflite"]


def test_on_a_terminal_nothing_is_left_in_the_log():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=200)
    with progress(console, "building") as say:
        say("initialising")
    assert "... initialising" not in buffer.getvalue()  # rich's transient spinner, not log lines


def test_build_piped_prints_its_steps_on_stderr(tmp_path):
    result = CliRunner().invoke(cli, ["build", "--arch", "v1", "--alpha", "0.25", "--res", "96", "--out",
                                      str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("... ") for line in lines), lines
    assert any("initialising" in line for line in lines), lines
    refused = CliRunner().invoke(cli, ["build", "--res", "100", "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2 and len(refused.stderr.strip().splitlines()) == 1  # nothing before the error
