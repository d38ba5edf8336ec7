"""A test-only Android device: the device side of the ADB protocol over TCP, for the real `adb` client and server.

The adb server connects to it like to any network device (`adb connect 127.0.0.1:PORT`), so the project's code
is tested against the genuine client: its command line, its error messages, its exit codes, its transfers.

    with AdbDevice.in_userland(rootfs) as device:      # commands run as aarch64 code (chroot + qemu-user)
        ... adb connect 127.0.0.1:{device.port} ...
    with AdbDevice.on_host(tmp_path) as device:         # no root needed: protocol tests only

What it does, as a phone's adbd would:
- CNXN: answers with its own banner (product name/model/device and features), which the host accepts without
  authentication, the way an emulator or a phone with an already-trusted key does. It advertises `shell_v2`,
  without which adb 29 reports exit status 0 for every `adb shell` command.
- reject mode (`authorize=False`): answers CNXN with an AUTH token and never accepts a signature or key, so the
  host lists the device as `unauthorized`, as if nobody tapped "Allow" on the phone.
- services: `shell,v2,...:CMD`, `shell:CMD`, `exec:CMD` (device_shell.py) and `sync:` (device_sync.py).
- `getprop`, `df` and `taskset` answer from the device profile (device_profile.py, system_bin/).
- vanishing: `disappear()`, or `disappear_at_command=N` (the Nth shell command starts, then the device drops off
  `disappear_delay` seconds later), or `disappear_when_file=PATH` (a device path; the device drops off as soon as
  something on it creates that file). Dropping off closes every connection, kills the device's processes and
  stops listening, like a phone unplugged or rebooted mid-run: the host's reconnect attempts are refused.
"""

from __future__ import annotations

import collections
import itertools
import os
import socket
import threading
import time
from pathlib import Path

from .adb_stream import DeviceStream, StreamClosed
from .adb_wire import (A_AUTH, A_CLSE, A_CNXN, A_OKAY, A_OPEN, A_VERSION, A_WRTE, AUTH_SIGNATURE,
                       AUTH_TOKEN, MAX_PAYLOAD, ConnectionLost, Message, ProtocolError,
                       connect_banner, read_message)
from .device_profile import PIXEL_2, DeviceProfile, write_personality
from .device_shell import ChrootRunner, HostRunner, serve_shell
from .device_sync import serve_sync

# What adb 29 needs to use the services this device implements: shell_v2 (exit codes, separate stderr),
# stat_v2 (STA2/LST2, which push and pull use to inspect remote paths), fixed_push_mkdir (the device creates a
# pushed file's parent directories), cmd (advertised by every phone since Android 7).
DEFAULT_FEATURES = ["shell_v2", "cmd", "stat_v2", "fixed_push_mkdir"]


class AdbConnection:
    """One TCP connection from the adb server: handshake, then streams multiplexed over it."""

    def __init__(self, device: "AdbDevice", sock: socket.socket) -> None:
        self.device = device
        self.sock = sock
        self.max_payload = MAX_PAYLOAD
        self.online = False
        self._send_lock = threading.Lock()
        self._streams: dict[int, DeviceStream] = {}
        self._streams_lock = threading.Lock()

    def send(self, message: Message) -> None:
        data = message.encode()
        with self._send_lock:
            try:
                self.sock.sendall(data)
            except OSError as exc:
                raise StreamClosed(f"connection to the host lost: {exc}") from exc
        self.device.transcript.append(("device", repr(message)))

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def run(self) -> None:
        try:
            while True:
                message = read_message(self.sock, max(self.max_payload, MAX_PAYLOAD))
                self.device.transcript.append(("host", repr(message)))
                self._handle(message)
        except (ConnectionLost, ProtocolError, StreamClosed, OSError):
            pass
        finally:
            with self._streams_lock:
                streams = list(self._streams.values())
            for stream in streams:
                stream.on_host_close()
            self.close()

    def _forget_stream(self, local_id: int) -> None:
        with self._streams_lock:
            self._streams.pop(local_id, None)

    def _stream(self, local_id: int) -> DeviceStream | None:
        with self._streams_lock:
            return self._streams.get(local_id)

    def _handle(self, message: Message) -> None:
        if message.command == A_CNXN:
            self.max_payload = min(message.arg1, MAX_PAYLOAD) or MAX_PAYLOAD
            if self.device.authorize:
                self.online = True
                banner = connect_banner(dict(self.device.profile.properties), self.device.features)
                self.send(Message(A_CNXN, A_VERSION, MAX_PAYLOAD, banner))
            else:
                self._send_auth_token()
        elif message.command == A_AUTH:
            # Reject mode: every signature is "wrong", and the public key the host then offers is never
            # confirmed by a user. (With authorize=True the host is accepted on CNXN and never sends AUTH.)
            if not self.online and message.arg0 == AUTH_SIGNATURE:
                self._send_auth_token()
            # AUTH_RSAPUBLICKEY: the phone would show "Allow USB debugging?"; nobody answers.
        elif not self.online:
            return  # an unauthorized device ignores everything else, as adbd does
        elif message.command == A_OPEN:
            self._open(message.arg0, message.data.rstrip(b"\0").decode("utf-8", "replace"))
        elif message.command == A_OKAY:
            stream = self._stream(message.arg1)
            if stream:
                stream.on_okay()
        elif message.command == A_WRTE:
            stream = self._stream(message.arg1)
            if stream:
                stream.input.feed(message.data)
                self.send(Message(A_OKAY, stream.local_id, stream.remote_id))
        elif message.command == A_CLSE:
            stream = self._stream(message.arg1)
            if stream:
                stream.on_host_close()

    def _send_auth_token(self) -> None:
        self.send(Message(A_AUTH, AUTH_TOKEN, 0, os.urandom(20)))

    def _open(self, remote_id: int, service: str) -> None:
        self.device.services_opened.append(service)
        handler = self.device.service_handler(service)
        if handler is None:
            self.send(Message(A_CLSE, 0, remote_id))  # "closed": what adbd answers for an unknown service
            return
        local_id = self.device.next_stream_id()
        stream = DeviceStream(local_id, remote_id, self.max_payload, self.send, self._forget_stream)
        with self._streams_lock:
            self._streams[local_id] = stream
        self.send(Message(A_OKAY, local_id, remote_id))
        threading.Thread(target=self._serve, args=(handler, stream), daemon=True,
                         name=f"adb-standin-{service[:30]}").start()

    @staticmethod
    def _serve(handler, stream: DeviceStream) -> None:
        try:
            handler(stream)
        except StreamClosed:
            pass
        finally:
            stream.close()


class AdbDevice:
    """The device: listens on 127.0.0.1, accepts the adb server's connections, runs services (see module doc)."""

    def __init__(self, root: str | Path, *, arm64: bool, profile: DeviceProfile = PIXEL_2, port: int = 0,
                 authorize: bool = True, features: list[str] | None = None,
                 disappear_at_command: int | None = None, disappear_when_file: str | None = None,
                 disappear_delay: float = 0.5) -> None:
        self.root = Path(root)
        self.arm64 = arm64
        self.runner = ChrootRunner(self.root) if arm64 else HostRunner(self.root)
        self.profile = profile
        self.authorize = authorize
        self.features = list(DEFAULT_FEATURES if features is None else features)
        self.disappear_at_command = disappear_at_command
        self.disappear_when_file = disappear_when_file
        self.disappear_delay = disappear_delay
        self.services_opened: list[str] = []
        # (sender, message) of the latest messages, for debugging a failed test
        self.transcript: collections.deque[tuple[str, str]] = collections.deque(maxlen=2000)
        self.commands_started = 0
        self.disappeared = threading.Event()
        self._requested_port = port
        self._port: int | None = None
        self._listener: socket.socket | None = None
        self._connections: list[AdbConnection] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    @classmethod
    def in_userland(cls, rootfs: str | Path, **options) -> "AdbDevice":
        """Commands run inside the arm64 userland (make_rootfs.sh), as real aarch64 code under qemu-user."""
        return cls(rootfs, arm64=True, **options)

    @classmethod
    def on_host(cls, scratch: str | Path, **options) -> "AdbDevice":
        """Commands run on this host in `scratch`; for protocol tests where the arm64 userland is unavailable."""
        return cls(scratch, arm64=False, **options)

    # --- lifecycle -------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("device not started")
        return self._port

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "AdbDevice":
        write_personality(self.root, self.profile)
        (self.root / "data/local/tmp").mkdir(parents=True, exist_ok=True)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._requested_port))
        listener.listen(8)
        self._listener = listener
        self._port = listener.getsockname()[1]
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True, name="adb-standin-accept").start()
        if self.disappear_when_file:
            threading.Thread(target=self._watch_for_file, daemon=True, name="adb-standin-watch").start()
        return self

    def stop(self) -> None:
        self.disappear()

    def __enter__(self) -> "AdbDevice":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def disappear(self) -> None:
        """Drop off the bus: close every connection, kill running commands, refuse reconnects."""
        self.disappeared.set()
        listener = self._listener
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept(); close() alone does not
            except OSError:
                pass
            listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.close()
        self.runner.kill_all()

    # --- used by connections ---------------------------------------------------------------------------
    def next_stream_id(self) -> int:
        return next(self._ids)

    def service_handler(self, service: str):
        """The function serving `service` on a stream, or None if this device does not offer it."""
        if service.startswith("shell") and ":" in service:
            options, _, command = service.partition(":")
            protocol_v2 = "v2" in options.split(",")[1:]
            self._command_started()
            return lambda stream: serve_shell(stream, self.runner, command, protocol_v2)
        if service.startswith("exec:"):
            command = service[len("exec:"):]
            self._command_started()
            return lambda stream: serve_shell(stream, self.runner, command, protocol_v2=False)
        if service == "sync:":
            return lambda stream: serve_sync(stream, self.runner)
        return None

    def _command_started(self) -> None:
        with self._lock:
            self.commands_started += 1
            count = self.commands_started
        if self.disappear_at_command is not None and count == self.disappear_at_command:
            timer = threading.Timer(self.disappear_delay, self.disappear)
            timer.daemon = True
            timer.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self.disappeared.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = AdbConnection(self, sock)
            with self._lock:
                self._connections.append(connection)
            threading.Thread(target=connection.run, daemon=True, name="adb-standin-connection").start()

    def _watch_for_file(self) -> None:
        path = self.runner.host_path(self.disappear_when_file)
        while not self.disappeared.is_set():
            if path.exists():
                self.disappear()
                return
            time.sleep(0.05)
