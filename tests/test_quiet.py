"""Native converter chatter (written below Python, on file descriptors 1 and 2) stays out of the tool's output:
dropped on success and on Ctrl-C, its tail shown when the converter fails. Run in a child process because the
context manager swaps the process's real file descriptors, which pytest's capture also uses."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SNIPPET = textwrap.dedent("""
    import os, signal, sys
    from mnetdeploy.quiet import quiet_native_output
    how = sys.argv[1]
    try:
        with quiet_native_output():
            for i in range(20):
                os.write(2, f"I tensorflow/converter chatter {i}\\n".encode())
                os.write(1, f"tf2onnx progress {i}\\n".encode())
            if how == "interrupt":
                os.kill(os.getpid(), signal.SIGINT)   # a real Ctrl-C, delivered as KeyboardInterrupt
            elif how == "fail":
                raise RuntimeError("converter failed")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
    print("done")
""")


def _run(how: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SNIPPET, how], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("how,stderr", [("ok", ""), ("interrupt", "interrupted\n")])
def test_chatter_is_dropped_on_success_and_on_ctrl_c(how, stderr):
    proc = _run(how)
    assert proc.stdout == "done\n"
    assert proc.stderr == stderr


def test_a_failing_converter_shows_its_last_lines_then_the_error():
    proc = _run("fail")
    lines = proc.stderr.splitlines()
    assert lines[0] == "converter output (last lines):"
    assert lines[-1] == "error: converter failed"
    assert [l.strip() for l in lines[-3:-1]] == ["I tensorflow/converter chatter 19", "tf2onnx progress 19"]
    assert len(lines) == 1 + 15 + 1  # the tail is bounded
