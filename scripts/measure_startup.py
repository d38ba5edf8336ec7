#!/usr/bin/env python3
"""Wall time of `mnetdeploy --help` against `python -c "import tensorflow"`, interleaved in one run.

`--help` must stay light (no TensorFlow import): target under 0.5 s while importing TensorFlow takes seconds.
"""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROUNDS = 5
BIN = Path(sys.executable).parent


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    return time.perf_counter() - start


def main() -> None:
    commands = {
        "mnetdeploy --help": [str(BIN / "mnetdeploy"), "--help"],
        "mnetdeploy build --help": [str(BIN / "mnetdeploy"), "build", "--help"],
        'python -c "import tensorflow"': [sys.executable, "-c", "import tensorflow"],
    }
    times = {name: [] for name in commands}
    for _ in range(ROUNDS):  # interleaved, so machine noise hits every command alike
        for name, cmd in commands.items():
            times[name].append(wall(cmd))
    for name, samples in times.items():
        print(f"{name:32s} median {statistics.median(samples):6.3f} s  min {min(samples):6.3f} s  ({ROUNDS} runs)")
    ratio = statistics.median(times['python -c "import tensorflow"']) / statistics.median(times["mnetdeploy --help"])
    print(f"import tensorflow / mnetdeploy --help = {ratio:.1f}x")


if __name__ == "__main__":
    main()
