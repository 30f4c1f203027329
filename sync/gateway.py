"""The sending side: a robot (or crane) gateway publishing telemetry to the twin.

Used by the hall emulator and the benchmarks; a manufacturer's real gateway does the
same in its own language (``docs/protocol.md``). One :class:`Gateway` per process
connection; it keeps a sequence number per stream and one epoch per start.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from typing import Final

import zmq

from sync.addresses import GATEWAY_SNDHWM
from sync.closing import Closing
from sync.command import curve_client
from sync.keys import KeyPair
from sync.protocol import Kind, pack_header, topic

REDIAL_S: Final = 0.5


def new_epoch() -> int:
    """A random non-zero 64-bit epoch id."""
    return secrets.randbits(63) | 1


class Gateway(Closing):
    """A PUB socket connected to the twin's ingest, with per-stream sequence numbers."""

    def __init__(
        self,
        context: zmq.Context[zmq.Socket[bytes]],
        ingest: str,
        *,
        epoch: int | None = None,
        clock_skew_ns: int = 0,
        curve: tuple[KeyPair, bytes] | None = None,
    ) -> None:
        """Connect to ``ingest``; ``clock_skew_ns`` is added to every stamp (emulated clocks);
        ``curve``: (this gateway's key pair, the twin's public key) for a twin with keys."""
        self._context = context
        self._curve = curve
        self._ingest = ingest
        self.clock_skew_ns = clock_skew_ns
        self.epoch = epoch or new_epoch()
        self._seq: dict[bytes, int] = {}
        self.sent = 0
        self.socket = self._open()

    def _open(self) -> zmq.Socket[bytes]:
        # XPUB is PUB on the wire, and also hears subscriptions: wait_for_subscriber()
        socket = self._context.socket(zmq.XPUB)
        socket.setsockopt(zmq.SNDHWM, GATEWAY_SNDHWM)
        socket.setsockopt(zmq.LINGER, 0)
        self._refusals: zmq.Socket[bytes] | None = None
        if self._curve is not None:
            curve_client(socket, *self._curve)
            # a key the twin has not read yet is refused, and libzmq never dials again
            # after a refused handshake: watched, so that waiting for the twin dials again
            self._refusals = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        socket.connect(self._ingest)
        return socket

    def wait_for_subscriber(self, timeout_s: float) -> bool:
        """Wait until the twin has subscribed (so nothing sent is dropped by PUB filtering).
        With keys, a handshake the twin refused (a key it has not read yet: it re-reads its
        key directory once a second) is dialled again every :data:`REDIAL_S` meanwhile."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            left_s = deadline - time.monotonic()
            if self.socket.poll(max(0, int(min(left_s, REDIAL_S) * 1000)), zmq.POLLIN):
                self.socket.recv()
                return True
            if time.monotonic() >= deadline:
                return False
            if self._refused():
                self.reconnect()

    def _refused(self) -> bool:
        """Whether the twin refused a handshake since the last look."""
        refusals = self._refusals
        if refusals is None:
            return False
        seen = False
        while True:
            try:
                refusals.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return seen
            seen = True

    def restart(self) -> None:
        """Behave like a restarted gateway: new epoch, sequence numbers from 0."""
        self.epoch = new_epoch()
        self._seq.clear()

    def reconnect(self) -> None:
        """Close and reopen the socket (a dropped and restored connection)."""
        self._close_socket()
        self.socket = self._open()

    def _close_socket(self) -> None:
        if self._refusals is not None:
            with contextlib.suppress(zmq.ZMQError):
                self.socket.disable_monitor()
            self._refusals.close(linger=0)
            self._refusals = None
        self.socket.close(linger=0)

    def next_seq(self, kind: Kind, source_id: str) -> tuple[bytes, int]:
        """Claim the next sequence number of a stream (also used to emulate loss)."""
        key = topic(kind, source_id)
        seq = self._seq.get(key, -1) + 1
        self._seq[key] = seq
        return key, seq

    def send(
        self, kind: Kind, source_id: str, payload: bytes, *, stamp_ns: int | None = None
    ) -> None:
        """Publish one message (never blocks: at the high-water mark PUB drops)."""
        key, seq = self.next_seq(kind, source_id)
        stamp = (stamp_ns if stamp_ns is not None else time.time_ns()) + self.clock_skew_ns
        self.socket.send_multipart((key, pack_header(kind, seq, stamp, self.epoch), payload))
        self.sent += 1

    def close(self) -> None:
        """Close the socket without lingering."""
        self._close_socket()
