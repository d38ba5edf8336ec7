"""How one benchmark run occupies a device: its own directory, the device lock, and its process on the device.

Run directory: `<base>/runs/<host>-<pid>-<random>/`. Everything a run creates for itself (the model when it is
not kept, the benchmark's pid file) goes there, and the run removes only that directory, so one run never
deletes another's files. Models kept with `--keep` live in `<base>/<sha256[:16]>/` and are reused, never removed
by a run; the tool cache is `<base>/bin/<sha256[:16]>/`.

The device lock: one benchmark at a time per device, across processes and hosts (two hosts may share a phone
through one adb server, or a board over ssh). It is the directory `<base>/lock`, created with `mkdir` (atomic
on every file system), holding `owner`: `host=H pid=P token=T started=S expires=E` (S and E in the device's
clock, seconds since 1970). A run that finds the lock held waits (a progress message names the owner), polling
every 2 s for at most `--lock-timeout` seconds, then fails with one line naming the owner. A lock is stale, and
is broken, when its owner is a process of this host that no longer exists, or when the device's clock is past
its `expires`: the owner's own worst case, written when it took the lock (copy time + trials x (cool-timeout +
run-timeout + 2 min) + 10 min). A lock without an owner file (its taker died between the two steps) is
stale after 60 s. The owner removes the lock when it ends, whatever happened (unless the device is gone).

The benchmark's process: the command is started in the background of the session's shell, which writes
`<its pid> <the benchmark's pid>` to the run directory's `bench.pid`, then waits for it. The session's shell
leads the process group of the command on adbd (which calls setsid) and sshd (likewise), so when the local
client is killed (run timeout, Ctrl-C) or the connection drops, `kill_remote` signals that group, and both
pids, over a fresh connection: a hung benchmark does not run on, reparented to init, under a later run.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from mnetdeploy.devices import ShellResult, Transport, quote
from mnetdeploy.errors import EXIT_FAILED, UserError

LOCK_POLL_SECONDS = 2.0
OWNERLESS_STALE_SECONDS = 60.0
_OWNER = re.compile(r"(\w+)=(\S*)")


def run_id() -> str:
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:32] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


# ------------------------------------------------------------------------------------------ the process

def background_command(command: str, pidfile: str) -> str:
    """`command` run so that its pids are known on the device (see the module docstring); the exit status is
    the command's (`wait` returns it)."""
    directory = pidfile.rsplit("/", 1)[0]
    return f"mkdir -p {quote(directory)}\n{command} &\necho \"$$ $!\" > {quote(pidfile)}\nwait $!"


def kill_remote(transport: Transport, pidfile: str, timeout: float = 20.0) -> None:
    """SIGKILL the benchmark recorded in `pidfile` and its process group, over a new command; best effort."""
    script = (f"if read -r g p < {quote(pidfile)} 2>/dev/null; then kill -9 -$g 2>/dev/null; "
              f"kill -9 $p $g 2>/dev/null; fi; rm -f {quote(pidfile)}; true")
    try:
        transport.shell(script, timeout, "stopping the benchmark on the device")
    except (UserError, OSError):
        pass  # the device is gone or unreachable: nothing more can be done from here


def run_killable(transport: Transport, command: str, pidfile: str, timeout: float, what: str) -> ShellResult:
    """`transport.shell(command)`; if it does not come back with a status (timeout, Ctrl-C, lost connection),
    the command is killed on the device before the error goes on."""
    try:
        return transport.shell(background_command(command, pidfile), timeout, what)
    except BaseException:
        kill_remote(transport, pidfile)
        raise


# ------------------------------------------------------------------------------------------ the lock

def _owner(text: str) -> dict[str, str]:
    return dict(_OWNER.findall(text))


def _describe(owner: dict[str, str], now: int | None) -> str:
    since = ""
    if owner.get("started", "").isdigit():
        since = time.strftime(" since %Y-%m-%dT%H:%M:%SZ", time.gmtime(int(owner["started"])))
        if now is not None:
            since += f" ({max(0, now - int(owner['started']))} s ago)"
    return f"host {owner.get('host', '?')} pid {owner.get('pid', '?')}{since}"


def _pid_gone(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


# Tokens of the locks runs in this process hold now. A lock on a device naming this host and pid but a token
# not held here was left by a run of this process that has ended (its device dropped out mid-run and came back,
# or shares storage with another device): stale, though the pid is alive.
_HELD_HERE: set[str] = set()


class DeviceLock:
    """`<base>/lock` on one device (see the module docstring)."""

    def __init__(self, transport: Transport, base: str, run: str) -> None:
        self.transport = transport
        self.path = f"{base}/lock"
        self.base = base
        self.token = run
        self.host = socket.gethostname() or "host"
        self.held = False

    def _try(self, expires_in: int) -> tuple[bool, dict[str, str], int | None, str]:
        """(taken, owner, device clock, raw owner text) in one round trip."""
        lock, owner = quote(self.path), quote(self.path + "/owner")
        mine = f"host={re.sub(r'[^A-Za-z0-9._-]', '_', self.host)} pid={os.getpid()} token={self.token}"
        script = (f"mkdir -p {quote(self.base)}; now=$(date +%s); "
                  f"if mkdir {lock} 2>/dev/null; then "
                  f"echo \"{mine} started=$now expires=$((now + {expires_in}))\" > {owner}.tmp && "
                  f"mv -f {owner}.tmp {owner} && echo __taken; "
                  f"else echo \"__owner=$(cat {owner} 2>/dev/null)\"; fi; echo \"__now=$now\"")
        out = self.transport.check(script, 60.0, "taking the device lock").stdout
        now = next((int(line[6:]) for line in out.splitlines() if line.startswith("__now=") and line[6:].isdigit()),
                   None)
        raw = next((line[8:] for line in out.splitlines() if line.startswith("__owner=")), "")
        return "__taken" in out.splitlines(), _owner(raw), now, raw

    def _stale(self, owner: dict[str, str], now: int | None, ownerless_since: float | None) -> bool:
        if not owner:
            return ownerless_since is not None and time.monotonic() - ownerless_since >= OWNERLESS_STALE_SECONDS
        if owner.get("host") == re.sub(r"[^A-Za-z0-9._-]", "_", self.host):
            pid = owner.get("pid", "")
            if _pid_gone(pid) or (pid == str(os.getpid()) and owner.get("token") not in _HELD_HERE):
                return True
        expires = owner.get("expires", "")
        return now is not None and expires.isdigit() and now > int(expires)

    def _break(self, raw: str) -> None:
        """Remove a stale lock, unless someone replaced it since it was read (then the next try sees that)."""
        lock = quote(self.path)
        aside = quote(f"{self.path}.stale-{self.token}")
        expected = quote(raw)
        self.transport.check(f"if [ \"$(cat {lock}/owner 2>/dev/null)\" = {expected} ]; then "
                             f"mv {lock} {aside} 2>/dev/null && rm -rf {aside}; fi; true", 60.0,
                             "removing a stale device lock")

    def acquire(self, expires_in: float, timeout: float, on_wait: Callable[[str], None] | None = None,
                sleep: Callable[[float], None] = time.sleep) -> None:
        start = time.monotonic()
        told = None
        ownerless_since = None
        while True:
            taken, owner, now, raw = self._try(int(expires_in) + 1)
            if taken:
                self.held = True
                _HELD_HERE.add(self.token)
                return
            if not owner:
                ownerless_since = ownerless_since or time.monotonic()
            else:
                ownerless_since = None
            if self._stale(owner, now, ownerless_since):
                self._break(raw)
                continue
            who = _describe(owner, now) if owner else "a run that is just starting"
            waited = time.monotonic() - start
            if waited >= timeout:
                label = self.transport.label
                raise UserError(f"{label}: busy: another benchmark holds {self.path} ({who}); waited "
                                f"{waited:.0f} s (--lock-timeout {timeout:g}); re-run when it is done, or if that "
                                f"run is gone, remove {self.path} on the device", exit_code=EXIT_FAILED)
            if on_wait is not None and who != told:
                on_wait(f"waiting for {self.transport.label}: in use by {who} (up to {timeout:g} s)")
                told = who
            sleep(min(LOCK_POLL_SECONDS, max(0.05, timeout - waited)))

    def forget(self) -> None:
        """The run is over but its device is gone: nothing to remove there; the lock is no longer held here."""
        _HELD_HERE.discard(self.token)
        self.held = False

    def release(self) -> None:
        if not self.held:
            return
        _HELD_HERE.discard(self.token)
        lock = quote(self.path)
        try:
            self.transport.shell(f"case \"$(cat {lock}/owner 2>/dev/null)\" in *\" token={self.token} \"*) "
                                 f"rm -rf {lock};; esac; true", 60.0, "releasing the device lock")
        except UserError:
            pass  # unreachable now: the expiry written in the lock frees the device later
        self.held = False


def lock_expiry(settings: Any, copy_bytes: int) -> float:
    """The owner's worst case, written into the lock (module docstring)."""
    from mnetdeploy.devices import push_timeout

    return push_timeout(copy_bytes) + settings.trials * (settings.cool_timeout + settings.run_timeout + 120) + 600


__all__ = ["DeviceLock", "background_command", "kill_remote", "lock_expiry", "run_id", "run_killable"]
