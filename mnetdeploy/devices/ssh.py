"""Linux boards: the system `ssh` client as a transport, and the Python runner that measures on the board.

    mnetdeploy bench model.tflite --device ssh://root@board.local:22 [--ssh-option IdentityFile=~/.ssh/board]

ssh runs with `BatchMode=yes` (never a password prompt: a CI job would hang on it), `ConnectTimeout=10`,
`StrictHostKeyChecking=accept-new` (a new board's key is learnt; a changed key still stops the job),
`ServerAliveInterval=5` (a board that reboots mid-run is noticed within ~15 s), and one shared connection
(ControlMaster in a private temporary directory, closed at the end) so the dozen commands of a benchmark do
not each pay a key exchange. Keys come from the user's agent and ~/.ssh/config; each `--ssh-option OPTION` is
passed as `ssh -o OPTION` before ours, so it wins (ssh keeps the first value it sees).

Files go over the same ssh connection as `cat > tmp && mv tmp final`, not scp: it needs nothing on the board but
a shell (many board images have no sftp-server, which scp uses since OpenSSH 9), and a cut copy never leaves a
file under the final name.

The runner: with no `--benchmark-binary`, the board runs `remote_runner.py` (a self-contained script, copied
like the model) with its own python3 and ai_edge_litert / tflite_runtime (or onnxruntime for .onnx), and prints
one JSON line with every sample. `runner_command` and `parse_runner_output` are the host's side of that.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mnetdeploy.devices import (
    EXIT_MARKER,
    DeviceLost,
    DeviceSettings,
    ShellResult,
    Target,
    Transport,
    last_words,
    quote,
    split_exit_marker,
    with_exit_marker,
)
from mnetdeploy.devices.benchmark_output import BenchmarkFailed
from mnetdeploy.errors import EXIT_USAGE, UserError

RUNNER = Path(__file__).resolve().with_name("remote_runner.py")
RESULT_PREFIX = "__MNETDEPLOY_RESULT__ "
SSH_HINT = "install OpenSSH's client (`apt-get install openssh-client`)"
DEFAULT_OPTIONS = ("BatchMode=yes", "ConnectTimeout=10", "StrictHostKeyChecking=accept-new",
                   "ServerAliveInterval=5", "ServerAliveCountMax=3")


class SshTransport(Transport):
    """Shell commands and copies to one board through the system ssh client."""

    def __init__(self, target: Target, options: Iterable[str] = ()) -> None:
        ssh = shutil.which("ssh")
        if ssh is None:
            raise UserError(f"ssh: not found on PATH; {SSH_HINT}")
        self.ssh = ssh
        assert target.host is not None  # parse_target sets it for every ssh:// target
        self.destination = f"{target.user}@{target.host}" if target.user else target.host
        self.port = target.port
        shown_host = f"[{target.host}]" if ":" in target.host else target.host
        self.label = f"ssh://{target.user + '@' if target.user else ''}{shown_host}" + \
            (f":{target.port}" if target.port else "")
        self.options = tuple(options)
        for option in self.options:
            if "=" not in option and " " not in option.strip():
                raise UserError(f"ssh option {option!r}: expected KEY=VALUE as for `ssh -o`, e.g. "
                                "IdentityFile=~/.ssh/board")
        self._control_dir = tempfile.mkdtemp(prefix="mnetdeploy-ssh-")
        self.connected = False   # a failure before the first success is a set-up problem (exit 2), later a loss

    def _base_argv(self) -> list[str]:
        argv = [self.ssh]
        for option in (*self.options, *DEFAULT_OPTIONS, "ControlMaster=auto",
                       f"ControlPath={self._control_dir}/%C", "ControlPersist=60"):
            argv += ["-o", option]
        if self.port:
            argv += ["-p", str(self.port)]
        return argv

    def _shell_argv(self, command: str) -> list[str]:
        return ["--", self.destination, command]   # "--": the destination is never read as an option

    def _client(self, argv_tail, timeout, what, stdin_path=None):
        try:
            with open(stdin_path or os.devnull, "rb") as stdin:
                completed = subprocess.run([*self._base_argv(), *argv_tail], stdin=stdin, capture_output=True,
                                           timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"{self.label}: {what} did not finish within {timeout:g} s; the board may be hung or "
                            "too slow for these settings (see --run-timeout); no result was recorded",
                            exit_code=1) from None
        if completed.returncode != 255:
            self.connected = True
        return completed

    def _failure(self, completed, what):
        said = last_words(completed.stderr.decode(errors="replace"))
        if self.connected:
            return DeviceLost(f"{self.label}: the connection was lost during {what} ({said or 'output cut short'}); "
                              "check the board and the network and re-run; no result was recorded")
        if "Permission denied" in said:
            advice = ("the board refused every key; add your public key to its ~/.ssh/authorized_keys, load it "
                      "into ssh-agent, or pass --ssh-option IdentityFile=PATH")
        elif "Host key verification failed" in said or "IDENTIFICATION HAS CHANGED" in said:
            advice = (f"the board's host key does not match the one in known_hosts; if it was re-imaged, remove "
                      f"the old key with `ssh-keygen -R {quote(self.destination.split('@')[-1])}`")
        else:
            advice = "check the address and port, that sshd runs on the board, and that `ssh` reaches it by hand"
        return UserError(f"{self.label}: cannot connect ({said or 'ssh exited ' + str(completed.returncode)}); "
                         f"{advice}", exit_code=EXIT_USAGE)

    def push(self, local: Path, remote: str, timeout: float) -> None:
        partial = f"{remote}.partial"
        command = f"cat > {quote(partial)} && mv -f {quote(partial)} {quote(remote)}"
        completed = self._client(self._shell_argv(with_exit_marker(command)), timeout, f"copy of {Path(local).name}",
                                 stdin_path=Path(local))
        result = _result(completed)
        if result is None:
            raise self._failure(completed, f"copy of {Path(local).name}")
        if result.status != 0:
            said = last_words(result.output)
            if "No space left" in said:
                raise UserError(f"{self.label}: the board is full: copying {Path(local).name} failed ({said}); "
                                f"free space in {self.base_dir} and re-run", exit_code=EXIT_USAGE)
            raise UserError(f"{self.label}: copying {local} to {remote} failed ({said})", exit_code=1)

    def pull(self, remote: str, local: Path, timeout: float) -> None:
        # `cat` with the exit status on stderr: stdout carries the file's bytes untouched.
        command = f"cat {quote(remote)}; echo {EXIT_MARKER}$? >&2"
        completed = self._client(self._shell_argv(command), timeout, f"copy of {remote}")
        status, stderr = split_exit_marker(completed.stderr.decode("utf-8", "replace"))
        if status is None:
            raise self._failure(completed, f"copy of {remote}")
        if status != 0:
            raise UserError(f"{self.label}: copying {remote} back failed ({last_words(stderr)})", exit_code=1)
        partial = Path(f"{local}.partial")
        partial.write_bytes(completed.stdout)
        partial.replace(local)

    def _exit_argv(self) -> list[str]:
        return [*self._base_argv(), "-O", "exit", "--", self.destination]

    def close(self) -> None:
        """Stop the shared master connection this transport started, and remove its socket directory."""
        try:
            subprocess.run(self._exit_argv(), capture_output=True, timeout=15, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self._control_dir, ignore_errors=True)

    def describe(self) -> dict:
        return {"label": self.label, "transport": "ssh", "destination": self.destination, "port": self.port,
                "ssh": self.ssh, "ssh_options": list(self.options)}


def _result(completed: subprocess.CompletedProcess) -> ShellResult | None:
    status, stdout = split_exit_marker(completed.stdout.decode("utf-8", "replace"))
    if status is None:
        return None
    return ShellResult(status, stdout, completed.stderr.decode("utf-8", "replace"))


# ------------------------------------------------------------------------------------------------ the runner

def runner_command(runner: str, model: str, settings: DeviceSettings, taskset: str | None,
                   python_cpus: list[int] | None) -> str:
    """The shell command that runs remote_runner.py on the board (pinned with taskset, or by the runner itself
    with sched_setaffinity when the board has no taskset)."""
    argv = ["python3", runner, "--model", model, "--threads", str(settings.threads), "--warmup",
            str(settings.warmup), "--runs", str(settings.runs), "--min-seconds", repr(float(settings.min_seconds)),
            "--seed", str(settings.seed)]
    if not settings.xnnpack:
        argv.append("--no-xnnpack")
    if python_cpus:
        argv += ["--cpus", ",".join(map(str, python_cpus))]
    command = " ".join(quote(a) for a in argv)
    return f"taskset {taskset} {command}" if taskset else command


def parse_runner_output(result: ShellResult, label: str, samples: bool = True) -> dict[str, Any]:
    """The runner's JSON; BenchmarkFailed quoting the board when it failed, UserError (exit 2) when the board
    lacks a runtime. `samples=False`: an eval run's, which measures nothing."""
    payload = None
    for line in result.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            try:
                payload = json.loads(line[len(RESULT_PREFIX):])
            except json.JSONDecodeError:
                payload = None
    if payload is None:
        said = last_words(result.output)
        raise BenchmarkFailed(f"{label}: the runner exited with status {result.status} without a result"
                              f"{f' ({said})' if said else ''}; no result was recorded")
    if "error" in payload:
        if payload.get("setup"):
            raise UserError(f"{label}: {payload['error']}")
        raise BenchmarkFailed(f"{label}: {payload['error']}")
    if result.status != 0:
        raise BenchmarkFailed(f"{label}: the runner printed a result but exited with status {result.status} "
                              f"({last_words(result.stderr)}); not trusted, no result was recorded")
    if not samples:
        return payload
    samples = payload.get("samples_ms")
    if not isinstance(samples, list) or not samples or not all(isinstance(x, (int, float)) and x > 0
                                                               for x in samples):
        raise BenchmarkFailed(f"{label}: the runner returned no usable samples; no result was recorded")
    return payload
