"""How a device is named, in `--device` and in a config's bench.devices / eval.device: checked when the config
is read (so a typo fails before anything is built, with its file and line), and parsed where the device is reached.

Only the standard library here: config.py imports it, and the devices package (which imports config) re-exports it.

    host                                    this machine
    android[:SERIAL][@HOST:PORT]            an Android device, on the local or a remote adb server
    adb-linux[:SERIAL][@HOST:PORT]          a Linux board reached over adb
    ssh://[USER@]HOST[:PORT]                a Linux board over ssh
"""

from __future__ import annotations

import dataclasses
import re

from mnetdeploy.errors import UserError

FORMS = "host, android[:SERIAL][@HOST:PORT], adb-linux[:SERIAL][@HOST:PORT] or ssh://[USER@]HOST[:PORT]"
SSH_FORM = "ssh://[USER@]HOST[:PORT], e.g. ssh://root@192.0.2.7:2222"


class BadDeviceName(UserError):
    """A device name that is none of FORMS; `why` is the reason without the name (config errors add their own)."""

    def __init__(self, device: str, why: str):
        super().__init__(f"device {device!r}: {why}")
        self.why = why


@dataclasses.dataclass(frozen=True)
class Target:
    """A device: "android[:SERIAL][@HOST:PORT]", "adb-linux[:SERIAL][@HOST:PORT]" or "ssh://[USER@]HOST[:PORT]"."""

    kind: str                 # "android" | "adb-linux" | "ssh"
    serial: str | None = None
    adb_server: str | None = None   # "android[:SERIAL]@HOST:PORT": a device on that (remote) adb server
    user: str | None = None
    host: str | None = None
    port: int | None = None


_SSH = re.compile(r"^ssh://(?:(?P<user>[^@/:\s]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^@/:\s\[\]]+)(?::(?P<port>\d+))?/?$")


def parse_target(device: str) -> Target:
    """The device `device` names; BadDeviceName for anything else (host is not a device target)."""
    if device.startswith("ssh://"):
        match = _SSH.match(device)
        if not match:
            raise BadDeviceName(device, f"expected {SSH_FORM}")
        for part in ("user", "host"):
            # ssh would read a leading "-" as an option (-oProxyCommand=... runs a command here).
            if (match[part] or "").startswith("-"):
                raise BadDeviceName(device, f"the {part} may not start with '-'; expected {SSH_FORM}")
        port = int(match["port"]) if match["port"] else None
        if port is not None and not 0 < port < 65536:
            raise BadDeviceName(device, f"port {port} is out of range 1-65535")
        return Target("ssh", user=match["user"], host=match["host"].strip("[]"), port=port)
    name, at, server = device.partition("@")
    kind, sep, serial = name.partition(":")
    if kind in ("android", "adb-linux"):
        if sep and not serial:
            raise BadDeviceName(device, f"empty serial; use {kind} or {kind}:SERIAL")
        if at:
            try:
                adb_server_args(server)
            except UserError as e:
                raise BadDeviceName(device, str(e)) from None
        return Target(kind, serial=serial or None, adb_server=server or None)
    raise BadDeviceName(device, f"unknown device; use {FORMS}")


def check_device_name(device: str) -> str:
    """`device` if it is "host" or a valid device target (for the config's validators)."""
    if device != "host":
        parse_target(device)
    return device


def is_device_target(device: str) -> bool:
    return device.startswith("ssh://") or device.partition(":")[0] in ("android", "adb-linux")


def adb_server_args(adb_server: str | None) -> list[str]:
    """`-H HOST -P PORT` for an adb server named HOST:PORT (or :PORT, or HOST)."""
    if not adb_server:
        return []
    host, sep, port = adb_server.rpartition(":")
    if not sep:
        host, port = adb_server, ""
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise UserError(f"adb_server {adb_server!r}: expected HOST:PORT, e.g. farm.example:5037")
    return [*(["-H", host.strip("[]")] if host else []), *(["-P", port] if port else [])]
