"""The ADB transport's wire format, as the device side sees it.

Every message is a 24-byte little-endian header followed by `data_length` bytes of payload:
    command, arg0, arg1, data_length, data_check (byte sum of the payload), magic (command ^ 0xffffffff)
Version 0x01000001 of the protocol lets both ends skip verifying data_check; we still compute it, because an
adb client that negotiates the older version does check it.
"""

from __future__ import annotations

import dataclasses
import socket
import struct

A_CNXN = 0x4E584E43
A_AUTH = 0x48545541
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
A_STLS = 0x534C5453

COMMAND_NAMES = {A_CNXN: "CNXN", A_AUTH: "AUTH", A_OPEN: "OPEN", A_OKAY: "OKAY",
                 A_CLSE: "CLSE", A_WRTE: "WRTE", A_STLS: "STLS"}

A_VERSION = 0x01000001          # the version that lets both ends skip data_check
MAX_PAYLOAD = 256 * 1024        # what we advertise; the host's own limit may be lower and then wins

AUTH_TOKEN = 1                  # device -> host: 20 random bytes to sign
AUTH_SIGNATURE = 2              # host -> device: the token signed with one of the host's keys
AUTH_RSAPUBLICKEY = 3           # host -> device: "no key was accepted, ask the user to trust this one"

_HEADER = struct.Struct("<6I")
HEADER_SIZE = _HEADER.size


class ConnectionLost(Exception):
    """The host closed the TCP connection (or it broke) before a whole message arrived."""


class ProtocolError(Exception):
    """The host sent something no adb client sends; the connection is dropped."""


@dataclasses.dataclass(frozen=True)
class Message:
    command: int
    arg0: int
    arg1: int
    data: bytes = b""

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.command, f"0x{self.command:08x}")

    def encode(self) -> bytes:
        header = _HEADER.pack(self.command, self.arg0, self.arg1, len(self.data),
                              sum(self.data) & 0xFFFFFFFF, self.command ^ 0xFFFFFFFF)
        return header + self.data

    def __repr__(self) -> str:  # compact, for test failure messages and transcripts
        preview = self.data[:40]
        return f"{self.name}({self.arg0:#x}, {self.arg1:#x}, {len(self.data)}B {preview!r})"


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        try:
            chunk = sock.recv(remaining)
        except OSError as exc:
            raise ConnectionLost(str(exc)) from exc
        if not chunk:
            raise ConnectionLost("connection closed by the host")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_message(sock: socket.socket, max_payload: int) -> Message:
    command, arg0, arg1, length, check, magic = _HEADER.unpack(_recv_exact(sock, HEADER_SIZE))
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic {magic:#x} for command {command:#x}")
    if length > max_payload:
        raise ProtocolError(f"{COMMAND_NAMES.get(command, hex(command))} carries {length} bytes, over {max_payload}")
    data = _recv_exact(sock, length) if length else b""
    # Hosts speaking A_VERSION or later send 0 here and expect no check; older ones send the byte sum.
    if check and check != sum(data) & 0xFFFFFFFF:
        raise ProtocolError(f"data check mismatch on {COMMAND_NAMES.get(command, hex(command))}")
    return Message(command, arg0, arg1, data)


def connect_banner(properties: dict[str, str], features: list[str]) -> bytes:
    """The device's CNXN payload: "device::" + the product properties adb shows in `adb devices -l` + features."""
    fields = [f"{key}={properties[key]}" for key in ("ro.product.name", "ro.product.model", "ro.product.device")
              if key in properties]
    fields.append("features=" + ",".join(features))
    return ("device::" + ";".join(fields)).encode()
