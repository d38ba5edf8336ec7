"""One ADB stream (an OPENed service) on the device side: a byte pipe in, a flow-controlled writer out.

ADB multiplexes streams over one transport. Each direction is flow-controlled by acknowledgement: after a WRTE
the sender may not send another WRTE on that stream until the peer answers OKAY. A device that ignores this
makes real adb clients stall or drop data, so `write` waits for the host's OKAY between chunks.
"""

from __future__ import annotations

import threading
from typing import Callable

from .adb_wire import A_CLSE, A_WRTE, Message


class StreamClosed(Exception):
    """The host closed the stream (or the whole connection went away)."""


class StreamInput:
    """Bytes the host wrote to the stream, read by the service thread as if from a pipe."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._eof = False
        self._cond = threading.Condition()

    def feed(self, data: bytes) -> None:
        with self._cond:
            self._buffer += data
            self._cond.notify_all()

    def end(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def read_some(self) -> bytes:
        """Whatever is buffered (waiting for at least one byte); b"" once the host closed the stream."""
        with self._cond:
            self._cond.wait_for(lambda: self._buffer or self._eof)
            data = bytes(self._buffer)
            self._buffer.clear()
            return data

    def read_exact(self, size: int) -> bytes:
        """Exactly `size` bytes; raises StreamClosed if the stream ends first."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._buffer) >= size or self._eof)
            if len(self._buffer) < size:
                raise StreamClosed(f"stream ended with {len(self._buffer)} of {size} bytes")
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
            return data


class DeviceStream:
    def __init__(self, local_id: int, remote_id: int, max_payload: int,
                 send: Callable[[Message], None], forget: Callable[[int], None]) -> None:
        self.local_id = local_id
        self.remote_id = remote_id
        self.input = StreamInput()
        self._max_payload = max_payload
        self._send = send
        self._forget = forget
        self._write_lock = threading.Lock()
        self._acked = threading.Condition()
        self._awaiting_ack = False
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def write(self, data: bytes) -> None:
        with self._write_lock:
            for start in range(0, len(data), self._max_payload):
                with self._acked:
                    self._acked.wait_for(lambda: not self._awaiting_ack or self._closed)
                    if self._closed:
                        raise StreamClosed("host closed the stream")
                    self._awaiting_ack = True
                self._send(Message(A_WRTE, self.local_id, self.remote_id, data[start:start + self._max_payload]))

    def on_okay(self) -> None:
        with self._acked:
            self._awaiting_ack = False
            self._acked.notify_all()

    def on_host_close(self) -> None:
        """The host sent CLSE (or the connection died): wake every waiter; nothing more is sent."""
        with self._acked:
            self._closed = True
            self._acked.notify_all()
        self.input.end()
        self._forget(self.local_id)

    def close(self) -> None:
        """The service is done: tell the host, once."""
        with self._acked:
            if self._closed:
                return
            self._closed = True
            self._acked.notify_all()
        self.input.end()
        self._forget(self.local_id)
        try:
            self._send(Message(A_CLSE, self.local_id, self.remote_id))
        except StreamClosed:
            pass  # the connection is gone (the device vanished or the host died): nobody to tell
