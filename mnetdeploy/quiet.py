"""Keep native libraries' console chatter out of the tool's output.

TensorFlow's converter, Keras' SavedModel export, tf2onnx, ONNX Runtime's calibrator and LiteRT's delegate
print progress (some from C++, below Python's sys.stdout) that would corrupt `--json` output and bury the
tool's own messages.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Capture everything written to file descriptors 1 and 2 for the duration, into a temporary log.

    TensorFlow's converter, Keras' SavedModel export, tf2onnx and ONNX Runtime's calibrator print pages of
    progress (some from C++, below Python's sys.stdout) that would corrupt `--json` output and bury the
    tool's own messages. On success or interrupt the log is dropped; when the block raises, its last lines are
    printed on stderr so the cause is visible. With MNETDEPLOY_DEBUG=1 (set by `mnetdeploy --debug`) it all goes to
    stderr as it happens."""
    sys.stdout.flush()
    sys.stderr.flush()
    debug = os.environ.get("MNETDEPLOY_DEBUG") == "1"
    try:
        saved_out, saved_err = os.dup(1), os.dup(2)
    except OSError:  # no real file descriptors (embedded interpreters): nothing to protect
        yield
        return
    log = tempfile.TemporaryFile()
    failed = False
    try:
        os.dup2(2 if debug else log.fileno(), 1)
        if not debug:
            os.dup2(log.fileno(), 2)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    except KeyboardInterrupt:  # the user stopped it: the one-line "interrupted" is all they need to read
        raise
    except BaseException:
        failed = True
        raise
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        if failed and not debug:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-15:]
            if tail:
                print("converter output (last lines):\n  " + "\n  ".join(tail), file=sys.stderr)
        log.close()
