"""The real `adb` client: finding it, listing devices, choosing one, and running shell commands and pushes.

Which adb: `--adb PATH`, else `$ADB`, else `adb` on PATH. Which server: `--adb-server HOST:PORT` (passed as
`adb -H HOST -P PORT`: a remote adb server is how device farms share phones), else adb's own default, which
honours `$ANDROID_ADB_SERVER_PORT`. Which device: `--serial`, the serial in `--device android:SERIAL`, else
`$ANDROID_SERIAL`, else the only device adb lists.

Failure modes of adb 29 this module turns into one clear error each:
- a device that vanishes mid-command: `adb shell` exits 0 with the output cut (the exit packet never came), so
  every command carries an exit marker (see mnetdeploy/devices/__init__.py); the next command says
  `error: device offline` or `error: device 'SERIAL' not found`. Both are `DeviceLost` (exit 1);
- adb writes some errors to stdout (`adb: error: failed to copy ...` on some versions), so both streams are read;
- adb 29 has no `push -q`: a push is judged by its exit status and its words, never by silence.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from mnetdeploy.device_names import adb_server_args
from mnetdeploy.devices import ANDROID_BASE, LINUX_BASE, DeviceLost, Transport, last_words
from mnetdeploy.errors import EXIT_USAGE, UserError

INSTALL_HINT = ("install Android platform-tools (the `adb` in developer.android.com/tools/releases/platform-tools) "
                "or `apt-get install adb`, or point --adb / $ADB at it")
LIST_TIMEOUT = 30.0

# adb's words for "the device is not (or no longer) there".
_LOST = re.compile(r"device offline|device '[^']*' not found|device not found|no devices/emulators found|"
                   r"error: closed|protocol fault|device still (?:connecting|authorizing)|connection reset|"
                   r"cannot connect to daemon|Broken pipe", re.IGNORECASE)

STATE_ADVICE = {
    "unauthorized": "unauthorized: this computer's adb key is not accepted yet; unlock the phone and accept the "
                    "'Allow USB debugging?' prompt (RSA key fingerprint), then re-run (no prompt? revoke USB "
                    "debugging authorizations in Developer options and reconnect)",
    "offline": "offline: adb sees the device but it does not respond; reconnect the cable (or `adb reconnect`), "
               "unlock the phone and re-run",
    "no permissions": "no permissions to open the USB device; add a udev rule for it (plugdev group) and "
                      "re-run after `adb kill-server`",
    "authorizing": "still authorizing; wait a few seconds and re-run",
    "connecting": "still connecting; wait a few seconds and re-run",
}


@dataclasses.dataclass(frozen=True)
class DeviceEntry:
    """One line of `adb devices -l`."""

    serial: str
    state: str                                    # device | unauthorized | offline | no permissions | recovery ...
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)   # product, model, device, usb, ...

    def describe(self) -> str:
        model = self.attributes.get("model", "").replace("_", " ")
        return f"{self.serial} ({model + ', ' if model else ''}{self.state})"


def find_adb(explicit: str | None = None) -> str:
    """The adb client to run; UserError (exit 2) with how to install it when there is none."""
    wanted = explicit or os.environ.get("ADB")
    if wanted:
        found = shutil.which(wanted)
        if found is None:
            source = "--adb" if explicit else "$ADB"
            raise UserError(f"{source} {wanted}: no such executable; {INSTALL_HINT}")
        return found
    found = shutil.which("adb")
    if found is None:
        raise UserError(f"adb: not found on PATH; {INSTALL_HINT}")
    return found


def parse_devices(text: str) -> list[DeviceEntry]:
    """Entries of `adb devices -l` output (daemon start-up chatter and the header are skipped)."""
    entries = []
    for line in text.splitlines():
        if not line.strip() or line.startswith(("List of devices", "*", "adb ")):
            continue
        fields = line.split()
        if len(fields) < 2:
            continue
        serial, rest = fields[0], fields[1:]
        if rest[0] == "no" and len(rest) > 1 and rest[1].startswith("permissions"):
            state, rest = "no permissions", []
        else:
            state, rest = rest[0], rest[1:]
        attributes = dict(field.split(":", 1) for field in rest if ":" in field)
        entries.append(DeviceEntry(serial, state, attributes))
    return entries


class AdbClient:
    """The adb client and the server it talks to."""

    def __init__(self, adb: str | None = None, server: str | None = None) -> None:
        self.path = find_adb(adb)
        self.server_args = adb_server_args(server)
        self.server = server or (f"localhost:{os.environ['ANDROID_ADB_SERVER_PORT']}"
                                 if os.environ.get("ANDROID_ADB_SERVER_PORT") else "localhost:5037")

    def run(self, args: list[str], timeout: float, stdin_path: Path | None = None) -> subprocess.CompletedProcess:
        argv = [self.path, *self.server_args, *args]
        # stdin never inherited: `adb shell` forwards it to the device and would wait on a terminal.
        with open(stdin_path or os.devnull, "rb") as stdin:
            return subprocess.run(argv, stdin=stdin, capture_output=True, timeout=timeout)

    def list_devices(self) -> list[DeviceEntry]:
        try:
            completed = self.run(["devices", "-l"], LIST_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise UserError(f"adb: `adb devices` did not answer within {LIST_TIMEOUT:g} s (server {self.server}); "
                            "restart it with `adb kill-server` and re-run") from None
        if completed.returncode != 0:
            said = last_words(completed.stderr.decode(errors="replace") + completed.stdout.decode(errors="replace"))
            raise UserError(f"adb: cannot list devices through the adb server at {self.server} ({said}); "
                            "check --adb-server / ANDROID_ADB_SERVER_PORT, or start it with `adb start-server`")
        return parse_devices(completed.stdout.decode(errors="replace"))

    def version(self) -> str | None:
        try:
            completed = subprocess.run([self.path, "version"], capture_output=True, timeout=LIST_TIMEOUT,
                                       stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return None
        lines = completed.stdout.decode(errors="replace").splitlines()
        return " ".join(line.split()[-1] for line in lines[:2] if line.strip()) or None


def select_device(client: AdbClient, serial: str | None) -> DeviceEntry:
    """The device to use, checked to be online and authorized; UserError (exit 2) naming what to do otherwise."""
    devices = client.list_devices()
    if serial:
        matches = [d for d in devices if d.serial == serial]
        if not matches:
            seen = ", ".join(d.describe() for d in devices) or "none"
            raise UserError(f"adb: no device {serial} (adb sees: {seen}); check the serial, the cable, or "
                            f"`adb connect {shlex.quote(serial)}` for a network device")
        entry = matches[0]
    elif not devices:
        raise UserError("adb: no device connected (`adb devices` lists none); plug in a phone with USB debugging "
                        "enabled, or `adb connect HOST:PORT`, then re-run")
    elif len(devices) > 1:
        listing = ", ".join(d.describe() for d in devices)
        raise UserError(f"adb: {len(devices)} devices connected: {listing}; choose one with --serial SERIAL "
                        "(or --device android:SERIAL, or ANDROID_SERIAL)")
    else:
        entry = devices[0]
    check_state(entry)
    return entry


def check_state(entry: DeviceEntry) -> None:
    if entry.state == "device":
        return
    advice = STATE_ADVICE.get(entry.state, f"in state '{entry.state}', not a booted device; boot it normally "
                                           "and re-run")
    raise UserError(f"adb: {entry.serial} is {advice}")


class AdbTransport(Transport):
    """Shell commands and pushes to one device through the adb client."""

    def __init__(self, client: AdbClient, serial: str, android: bool = True) -> None:
        self.client = client
        self.serial = serial
        self.android = android
        self.label = f"{'android' if android else 'adb-linux'}:{serial}"
        self.base_dir = ANDROID_BASE if android else LINUX_BASE

    def _shell_argv(self, command: str) -> list[str]:
        return ["shell", command]

    def _client(self, argv_tail, timeout, what, stdin_path=None):
        try:
            return self.client.run(["-s", self.serial, *argv_tail], timeout, stdin_path)
        except subprocess.TimeoutExpired:
            # adb is killed by subprocess.run; closing its stream makes adbd kill the command on the phone.
            raise UserError(f"{self.label}: {what} did not finish within {timeout:g} s; the device may be hung or "
                            "too slow for these settings (see --run-timeout); no result was recorded",
                            exit_code=1) from None

    def _failure(self, completed, what):
        # adb's own complaints are labelled adb; the command's output (a benchmark's log) is the device's.
        stdout = completed.stdout.decode(errors="replace")
        text = completed.stderr.decode(errors="replace") + "\n" + stdout
        from_adb = [line for line in text.splitlines() if _LOST.search(line) or line.startswith(("adb:", "error:"))]
        adb_said = last_words("\n".join(from_adb))
        why = f"adb: {adb_said}" if adb_said else "its output ended without the command's exit status"
        if last_words(stdout) and not from_adb:
            why += f"; the device's last output: {last_words(stdout)}"
        return DeviceLost(f"{self.label}: the device stopped answering during {what} ({why}); reconnect it, check "
                          "`adb devices` and re-run; no result was recorded")

    def push(self, local: Path, remote: str, timeout: float) -> None:
        completed = self._client(["push", str(local), remote], timeout, f"push of {Path(local).name}")
        said = completed.stdout.decode(errors="replace") + completed.stderr.decode(errors="replace")
        if completed.returncode == 0 and "error:" not in said:
            return
        if "No space left on device" in said:
            raise UserError(f"{self.label}: the device is full: pushing {Path(local).name} to {remote} failed "
                            f"(No space left on device); free space in {self.base_dir} and re-run",
                            exit_code=EXIT_USAGE)
        if _LOST.search(said) or not said.strip():
            raise self._failure(completed, f"push of {Path(local).name}")
        raise UserError(f"{self.label}: pushing {local} to {remote} failed ({last_words(said)})", exit_code=1)

    def pull(self, remote: str, local: Path, timeout: float) -> None:
        partial = Path(f"{local}.partial")
        completed = self._client(["pull", remote, str(partial)], timeout, f"pull of {remote.rsplit('/', 1)[-1]}")
        said = completed.stdout.decode(errors="replace") + completed.stderr.decode(errors="replace")
        if completed.returncode != 0 or "error:" in said or not partial.is_file():
            partial.unlink(missing_ok=True)
            if _LOST.search(said) or not said.strip():
                raise self._failure(completed, f"pull of {remote}")
            raise UserError(f"{self.label}: pulling {remote} failed ({last_words(said)})", exit_code=1)
        partial.replace(local)

    def describe(self) -> dict:
        return {"label": self.label, "transport": "adb", "serial": self.serial, "adb": self.client.path,
                "adb_server": self.client.server}


# ------------------------------------------------------------------------------------------ `mnetdeploy devices`

# One round trip per device: the Android properties when there is getprop, else what a Linux system says.
_DESCRIBE = ("if command -v getprop >/dev/null 2>&1; then getprop; else echo __no_getprop; fi; "
             "echo \"__uname=$(uname -m 2>/dev/null)\"")
_PROP = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")


def device_properties(transport: Transport, timeout: float = LIST_TIMEOUT) -> dict[str, str]:
    """getprop's properties of an Android device (none when the device has no getprop: not Android), plus
    `__uname` (uname -m)."""
    result = transport.shell(_DESCRIBE, timeout, "reading the device properties")
    props: dict[str, str] = {}
    android = "__no_getprop" not in result.stdout.splitlines()
    for line in result.stdout.splitlines():
        if match := _PROP.match(line.strip()):
            props[match.group(1)] = match.group(2)
        elif line.startswith("__uname="):
            props["__uname"] = line.split("=", 1)[1].strip()
    return props if android else {"__uname": props.get("__uname", "")}


def soc_name(props: dict[str, str]) -> str | None:
    """The SoC as Android names it: ro.soc.model (Android 12+), else ro.board.platform (e.g. msm8998)."""
    model = props.get("ro.soc.model")
    manufacturer = props.get("ro.soc.manufacturer")
    if model:
        return f"{manufacturer} {model}" if manufacturer and manufacturer not in model else model
    return props.get("ro.board.platform") or props.get("ro.hardware") or None


def describe_devices(adb: str | None = None, server: str | None = None) -> list[dict]:
    """Every device adb lists, with model, ABI, Android version and SoC for those that are online."""
    client = AdbClient(adb, server)
    described = []
    for entry in client.list_devices():
        row: dict[str, Any] = {"serial": entry.serial, "state": entry.state, "transport": "adb",
               "model": entry.attributes.get("model", "").replace("_", " ") or None, "os": None, "abi": None,
               "abilist": None, "android_version": None, "sdk": None, "soc": None, "machine": None, "note": None}
        if entry.state != "device":
            row["note"] = STATE_ADVICE.get(entry.state, f"state '{entry.state}'")
            described.append(row)
            continue
        try:
            props = device_properties(AdbTransport(client, entry.serial))
        except UserError as exc:  # one flaky device must not hide the others
            row["note"] = str(exc)
            described.append(row)
            continue
        row["machine"] = props.get("__uname") or None
        if "ro.product.cpu.abi" in props or "ro.build.version.release" in props:
            row.update(os="android", model=props.get("ro.product.model") or row["model"],
                       abi=props.get("ro.product.cpu.abi") or None,
                       abilist=[a for a in props.get("ro.product.cpu.abilist", "").split(",") if a] or None,
                       android_version=props.get("ro.build.version.release") or None,
                       sdk=props.get("ro.build.version.sdk") or None, soc=soc_name(props))
        else:
            row.update(os="linux", note="no getprop: a Linux device over adb; bench it with --device adb-linux")
        described.append(row)
    return described
