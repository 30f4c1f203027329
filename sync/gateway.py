"""The sending side: a robot (or crane) gateway publishing telemetry to the twin.

Used by the hall emulator and the benchmarks; a manufacturer's real gateway does the
same in its own language (``docs/protocol.md``). One :class:`Gateway` per process
connection; it keeps a sequence number per stream and one epoch per start.
"""

from __future__ import annotations

import secrets
import time

import zmq

from sync.addresses import GATEWAY_SNDHWM
from sync.closing import Closing
from sync.command import curve_client
from sync.keys import KeyPair
from sync.protocol import Kind, pack_header, topic


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
        if self._curve is not None:
            curve_client(socket, *self._curve)
        socket.connect(self._ingest)
        return socket

    def wait_for_subscriber(self, timeout_s: float) -> bool:
        """Wait until the twin has subscribed (so nothing sent is dropped by PUB filtering)."""
        if self.socket.poll(max(0, int(timeout_s * 1000)), zmq.POLLIN):
            self.socket.recv()
            return True
        return False

    def restart(self) -> None:
        """Behave like a restarted gateway: new epoch, sequence numbers from 0."""
        self.epoch = new_epoch()
        self._seq.clear()

    def reconnect(self) -> None:
        """Close and reopen the socket (a dropped and restored connection)."""
        self.socket.close(linger=0)
        self.socket = self._open()

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
        self.socket.close(linger=0)
