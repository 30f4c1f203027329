"""Snapshot and status requests, answered by a process of its own from pre-encoded replies.

The twin's loop never reads the snapshot/status endpoint. A child process (``python -m
sync.replies``, started by :class:`ReplyServer`) binds it and answers every request from
bytes the twin encodes and hands over a local channel: a snapshot after every fan-out
update, and a status only when someone waits for one, at most once per display period
(every status request is answered with the first status made after it arrived). A snapshot
request that comes before the twin's first snapshot waits for it (the twin says its addresses
before it has one), rather than getting an error.

A process, not a thread: a thread answering thousands of requests a second trades the GIL
with the twin's loop at every socket call, and on a busy machine each hand back can wait
for the scheduler (pauses of 100-400 ms were measured that way).

Limits, each counted (``twin status`` shows them under ``requests``):

- per peer (one connection's routing id): ``PEER_RATE_HZ`` requests a second, bursts of
  ``PEER_BURST``; beyond, a request is shed (no answer);
- all peers together: ``GLOBAL_RATE_HZ`` answers a second; beyond, shed;
- status requests waiting for a fresh status, and snapshot requests waiting for the first
  snapshot: at most ``PENDING_MAX`` each; beyond, shed;
- the socket's own queues: ``ZMQ_RCVHWM``/``ZMQ_SNDHWM`` of ``REQUEST_HWM``.

A shed request never reaches the twin; its asker times out and may ask again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import zmq

from sync.fanout import ERROR, SNAPSHOT, STATUS
from sync.worker import WorkerProcess, connect, orphaned

log = logging.getLogger(__name__)

PEER_RATE_HZ: Final = 100.0
PEER_BURST: Final = 100.0
GLOBAL_RATE_HZ: Final = 5000.0
GLOBAL_BURST: Final = 1000.0
PENDING_MAX: Final = 512
PEERS_KEPT: Final = 4096
REQUEST_HWM: Final = 1000
_COUNTERS_EVERY_NS: Final = 200_000_000
_POLL_MS: Final = 200
_BOUND: Final = b"bound"
_FAILED: Final = b"failed"
_WANT: Final = b"want"
_COUNTERS: Final = b"counters"
_STOP: Final = b"stop"
COUNTER_NAMES: Final = (
    "snapshots",
    "statuses",
    "bad_requests",
    "shed_peer_rate",
    "shed_global_rate",
    "shed_pending_full",
    "send_failed",
)


class ReplyServer:
    """The twin's side: start the serving process, hand it encodings, read its counters.

    All methods run on the twin loop's thread (after construction).
    """

    def __init__(self, context: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> None:
        """Start the process, which binds ``endpoint``; OSError if it cannot."""
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.status_wanted = False
        self._worker = WorkerProcess(
            "sync.replies",
            [endpoint],
            what=f"the snapshot/status server for {endpoint}",
            fail=OSError,
            context=context,
            send_hwm=8,
        )
        self._channel = self._worker.channel
        try:
            self.endpoint = self._worker.wait_for(lambda tag, body: _bound(endpoint, tag, body))
        except BaseException:
            self.close()
            raise

    def publish_snapshot(self, body: bytes) -> None:
        """The newest snapshot (msgpack ``Snapshot``)."""
        self._send(SNAPSHOT, body)

    def publish_status(self, body: bytes) -> None:
        """A fresh status (JSON): waiting status requests get it."""
        self.status_wanted = False
        self._send(STATUS, body)

    def _send(self, kind: bytes, body: bytes) -> None:
        # the server is behind (its queue is full): it keeps the previous one
        with contextlib.suppress(zmq.ZMQError):
            self._channel.send_multipart((kind, body), zmq.NOBLOCK)

    def poll(self) -> None:
        """Read what the server said: someone wants a status; its counters."""
        while True:
            try:
                kind, body = self._channel.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:  # not two frames: cannot come from our server
                continue
            if kind in (_WANT, _COUNTERS):
                self.counters = json.loads(body)
                self.status_wanted = self.status_wanted or kind == _WANT

    def close(self) -> None:
        """Stop the process (it also stops by itself when the twin's process is gone)."""
        if self._worker.exit_code() is None:
            self._send(_STOP, b"")
            self._worker.stop(timeout_s=2.0)
        self._worker.close()


def _bound(endpoint: str, kind: bytes, detail: bytes) -> str:
    """The address the server bound (``_BOUND``); anything else is why it could not."""
    if kind == _BOUND:
        return detail.decode()
    raise OSError(f"cannot bind the snapshot socket to {endpoint}: {detail.decode()}")


@dataclass
class _Bucket:
    tokens: float
    stamp_ns: int

    def take(self, now_ns: int, rate_hz: float, burst: float) -> bool:
        self.tokens = min(burst, self.tokens + (now_ns - self.stamp_ns) * rate_hz / 1e9)
        self.stamp_ns = now_ns
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class _Server:
    """The serving process's state: the router, the newest encodings, limits, counters."""

    def __init__(self, router: zmq.Socket[bytes], channel: zmq.Socket[bytes]) -> None:
        self.router = router
        self.channel = channel
        self.counters: dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)
        self.snapshot: bytes | None = None
        self.pending: list[list[bytes]] = []
        self.awaiting_snapshot: list[list[bytes]] = []
        """Snapshot requests that came before the twin's first snapshot (answered with it)."""
        self.peers: dict[bytes, _Bucket] = {}
        self.all_peers = _Bucket(GLOBAL_BURST, time.monotonic_ns())
        self.counters_sent_ns = 0

    def from_twin(self) -> bool:
        """Take the twin's encodings; False when told to stop."""
        while True:
            try:
                kind, body = self.channel.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return True
            if kind == _STOP:
                return False
            if kind == SNAPSHOT:
                self.snapshot = body
                early, self.awaiting_snapshot = self.awaiting_snapshot, []
                for envelope in early:
                    self.counters["snapshots"] += 1
                    self.send([*envelope, SNAPSHOT, body])
            elif kind == STATUS:
                pending, self.pending = self.pending, []
                for envelope in pending:
                    self.counters["statuses"] += 1
                    self.send([*envelope, STATUS, body])

    def requests(self) -> None:
        now_ns = time.monotonic_ns()
        for _ in range(REQUEST_HWM):
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            self.one(frames, now_ns)
        if self.pending:
            self.tell(_WANT, now_ns)

    def one(self, frames: list[bytes], now_ns: int) -> None:
        # ROUTER: [identity, (empty delimiter from REQ), request]
        identity = frames[0]
        envelope = frames[:2] if len(frames) > 1 and frames[1] == b"" else frames[:1]
        rest = frames[len(envelope) :]
        counters = self.counters
        bucket = self.peers.get(identity)
        if bucket is None:
            if len(self.peers) >= PEERS_KEPT:
                self.peers.clear()  # forget them all: at worst a peer gets a fresh burst
            bucket = self.peers[identity] = _Bucket(PEER_BURST, now_ns)
        if not bucket.take(now_ns, PEER_RATE_HZ, PEER_BURST):
            counters["shed_peer_rate"] += 1
            return
        if not self.all_peers.take(now_ns, GLOBAL_RATE_HZ, GLOBAL_BURST):
            counters["shed_global_rate"] += 1
            return
        what = rest[0] if len(rest) == 1 else b""
        if what == STATUS:  # answered with the twin's next status: never an older one
            if len(self.pending) < PENDING_MAX:
                self.pending.append(envelope)
            else:
                counters["shed_pending_full"] += 1
        elif what == SNAPSHOT and self.snapshot is not None:
            counters["snapshots"] += 1
            self.send([*envelope, SNAPSHOT, self.snapshot])
        elif what == SNAPSHOT:  # the twin has not made one yet: answered with its first
            if len(self.awaiting_snapshot) < PENDING_MAX:
                self.awaiting_snapshot.append(envelope)
            else:
                counters["shed_pending_full"] += 1
        else:
            counters["bad_requests"] += 1
            self.send([*envelope, ERROR, b"unknown request; ask for 'snapshot' or 'status'"])

    def send(self, frames: list[bytes]) -> None:
        try:
            self.router.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError:  # the asker went away, or its queue is full
            self.counters["send_failed"] += 1

    def tell(self, kind: bytes, now_ns: int) -> None:
        self.counters_sent_ns = now_ns
        with contextlib.suppress(zmq.ZMQError):
            self.channel.send_multipart((kind, json.dumps(self.counters).encode()), zmq.NOBLOCK)


def serve(endpoint: str, channel_endpoint: str, parent_pid: int) -> int:
    """The serving process: bind ``endpoint``, answer until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the twin decides when to stop
    context, channel = connect(channel_endpoint)
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.RCVHWM, REQUEST_HWM)
    router.setsockopt(zmq.SNDHWM, REQUEST_HWM)
    try:
        router.bind(endpoint)
    except zmq.ZMQError as exc:
        channel.send_multipart((_FAILED, str(exc).encode()))
        context.destroy(linger=200)
        return 2
    bound = router.getsockopt(zmq.LAST_ENDPOINT)
    assert isinstance(bound, bytes)
    channel.send_multipart((_BOUND, bound))
    server = _Server(router, channel)
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    poller.register(channel, zmq.POLLIN)
    try:
        while not orphaned(parent_pid):
            ready = dict(poller.poll(_POLL_MS))
            if channel in ready and not server.from_twin():
                break
            if router in ready:
                server.requests()
            now_ns = time.monotonic_ns()
            if now_ns - server.counters_sent_ns >= _COUNTERS_EVERY_NS:
                server.tell(_COUNTERS, now_ns)
    finally:
        context.destroy(linger=0)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sync.replies CHANNEL PARENT_PID ENDPOINT`` (started by ReplyServer)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("channel")
    parser.add_argument("parent_pid", type=int)
    parser.add_argument("endpoint")
    args = parser.parse_args(argv)
    return serve(args.endpoint, args.channel, args.parent_pid)


if __name__ == "__main__":
    sys.exit(main())
