"""An ingest worker process of ``twin live --workers N``: its share of the gateways'
connections taken in, digests out to the twin.

Started by :class:`twin.live.shards.IngestShards` as ``python -m twin.live.shard_worker
CHANNEL PARENT_PID``. It takes the start-up parameters (scene, models, endpoint, key
directory), binds the shared ingest port (:func:`sync.shared_port.bind_shared`: the
kernel hands it some of the gateways' connections), says ``ready`` (or ``failed`` and
why), then until told to stop or orphaned:

- drains its socket in batches and handles every message with the twin's own
  :class:`~twin.live.ingest.Ingest` over links of its own (screening, headers, sequences,
  epochs, keys: the one-process twin's rules and counters);
- every :data:`DIGEST_EVERY_NS` (and whenever its socket runs empty) sends the twin a
  digest (:mod:`twin.live.shard_digest`), without waiting: a twin that does not keep up
  makes the channel fill, and a digest that does not fit is kept and merged into the next
  (increments and runs add up, the states are the newest; held frames for the recorder
  and events are bounded, and what is dropped of them is counted);
- with keys, reloads the key directory like the twin does (add/revoke without restart).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import pickle
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import zmq

from sync.addresses import INGEST_RCVHWM, MAX_MESSAGE_BYTES, close_quietly
from sync.monitor import SocketMonitor
from sync.shared_port import bind_shared
from sync.telemetry_keys import TelemetryAuth, TelemetryKeys
from sync.worker import connect, orphaned
from twin.live.ingest import Ingest, take_batch
from twin.live.links import RobotLink, bare_robot_links, crane_links
from twin.live.shard_digest import Digest, Digester, merge

log = logging.getLogger(__name__)

INIT: Final = b"init"
READY: Final = b"ready"
FAILED: Final = b"failed"
CONFIG: Final = b"config"
DIGEST: Final = b"digest"
STOP: Final = b"stop"

BATCH: Final = 128
CHANNEL_HWM: Final = 64
"""Digests in flight to the twin; beyond, they wait in the worker and are merged (a digest
holds every increment, so merging loses nothing but the older states)."""
DIGEST_EVERY_NS: Final = 4_000_000
"""How often a busy worker tells the twin; a quiet one tells it when its socket runs empty,
but not more often than every DIGEST_MIN_NS (a digest costs about as much as a few tens of
messages: one per gateway's burst would cost more than the messages)."""
DIGEST_MIN_NS: Final = 2_000_000
_ROUND_MESSAGES: Final = 1024
_QUIET_DIGEST_NS: Final = 100_000_000
_POLL_MS: Final = 50
_RELOAD_EVERY_NS: Final = 1_000_000_000
INIT_TIMEOUT_MS: Final = 60_000


class _Shard:
    """One worker's links, ingest and socket."""

    def __init__(self, init: dict[str, Any]) -> None:
        from robots.library import add_model_dirs

        add_model_dirs([Path(p) for p in init["model_roots"].values()], "the twin's models")
        scene = init["scene"]
        self.index: int = init["worker"]
        self.robots = bare_robot_links(scene)
        self.cranes = crane_links(scene)
        self.ingest = Ingest(scene.name, self.robots, self.cranes, self._event)
        self.digester = Digester(self.index, self.ingest, self.robots, self.cranes)
        self.record_frames = True  # until the twin says (CONFIG) whether it records
        self.keys: TelemetryKeys | None = None
        self.auth: TelemetryAuth | None = None
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        if init["keys"] is not None:
            self.keys = TelemetryKeys(Path(init["keys"]))
            self.auth = TelemetryAuth(self.keys)
            self.ingest.authorise = self.keys.may_speak_for
            self.socket = self.auth.socket(zmq.SUB)
        else:
            self.socket = self.context.socket(zmq.SUB)
        self.monitor = SocketMonitor(self.socket)
        self.socket.setsockopt(zmq.RCVHWM, INGEST_RCVHWM)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self.socket.setsockopt(zmq.SUBSCRIBE, b"")
        self.socket.setsockopt(zmq.LINGER, 0)
        bind_shared(self.socket, init["endpoint"])
        self._pending: Digest | None = None

    def _event(self, kind: str, source_id: str, detail: str) -> None:
        self.digester.event(kind, source_id, detail)

    def take(self, limit: int) -> tuple[int, bool]:
        """Handle up to ``limit`` waiting messages: (handled, whether the socket ran empty)."""
        handled = 0
        recv = self.socket.recv
        keyed = self.keys is not None
        ingest = self.ingest
        digester = self.digester
        record = self.record_frames
        while handled < limit:
            batch, peers, empty = take_batch(recv, min(BATCH, limit - handled), keyed)
            if batch:
                received_ns = time.time_ns()
                mono_ns = time.monotonic_ns()
                screened = ingest.screen(batch)
                for i, frames in enumerate(batch):
                    accepted = ingest.handle(
                        frames, received_ns, mono_ns, peers[i] if keyed else None, screened[i]
                    )
                    if accepted is None:
                        continue
                    link, kind, header = accepted
                    source = link.robot_id if isinstance(link, RobotLink) else link.crane_id
                    digester.accepted(source, kind, header.seq, header.epoch, received_ns)
                    if record:
                        digester.frames(received_ns, frames)
                handled += len(batch)
            if empty:
                return handled, True
        return handled, False

    def send_digest(self, channel: zmq.Socket[bytes]) -> None:
        """Tell the twin what changed, without waiting (kept for the next try if full)."""
        self.monitor.poll()
        found = self.digester.digest(self.monitor.counts)
        if found is not None:
            self._pending = found if self._pending is None else merge(self._pending, found)
        if self._pending is None or not channel.poll(0, zmq.POLLOUT):
            return  # the twin is behind: the digest waits (merged with the next ones)
        try:
            channel.send_multipart((DIGEST, self._pending.dumps()), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        self._pending = None

    @property
    def pending(self) -> bool:
        """A digest the channel could not take yet waits."""
        return self._pending is not None

    def close(self) -> None:
        self.monitor.close()
        close_quietly(self.socket)
        if self.auth is not None:
            self.auth.close()
        self.context.destroy(linger=0)


def _run(shard: _Shard, channel: zmq.Socket[bytes], parent_pid: int) -> None:
    poller = zmq.Poller()
    poller.register(shard.socket, zmq.POLLIN)
    poller.register(channel, zmq.POLLIN)
    last_digest = last_reload = time.monotonic_ns()
    owed = False  # a digest is due once DIGEST_MIN_NS has passed
    while True:
        timeout_ms = _POLL_MS
        if owed:  # whole milliseconds, rounded up: never spin
            left_ns = last_digest + DIGEST_MIN_NS - time.monotonic_ns()
            timeout_ms = max(0, -(-left_ns // 1_000_000))
        ready = dict(poller.poll(timeout_ms))
        if channel in ready:
            tag, body = channel.recv_multipart()
            if tag == STOP:
                shard.send_digest(channel)
                return
            if tag == CONFIG:
                shard.record_frames = bool(json.loads(body).get("frames"))
        empty = True
        if shard.socket in ready:
            handled, empty = shard.take(_ROUND_MESSAGES)
            owed = owed or handled > 0
        now = time.monotonic_ns()
        since = now - last_digest
        if (
            (owed or shard.pending)
            and (since >= DIGEST_EVERY_NS or (empty and since >= DIGEST_MIN_NS))
        ) or since >= _QUIET_DIGEST_NS:  # also what the socket monitor saw, when quiet
            shard.send_digest(channel)
            last_digest = now
            owed = False
        if now - last_reload >= _RELOAD_EVERY_NS:
            last_reload = now
            if shard.keys is not None:
                shard.keys.reload_if_changed(now)
            if orphaned(parent_pid):
                return


def serve(endpoint: str, parent_pid: int) -> int:
    """The worker's life: 0 when told to stop or orphaned, 2 when it could not start."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the twin decides when to stop
    context, channel = connect(endpoint, linger_ms=1000, send_hwm=CHANNEL_HWM)
    try:
        if not channel.poll(INIT_TIMEOUT_MS, zmq.POLLIN):
            return 2
        tag, body = channel.recv_multipart()
        if tag != INIT:
            return 2
        try:
            shard = _Shard(pickle.loads(body))
        except Exception as exc:  # its one line goes back to the twin
            with contextlib.suppress(zmq.ZMQError):
                channel.send_multipart((FAILED, str(exc).encode()), zmq.NOBLOCK)
            return 2
        try:
            channel.send_multipart((READY, b"{}"))
            _run(shard, channel, parent_pid)
        finally:
            shard.close()
        return 0
    finally:
        context.destroy(linger=1000)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m twin.live.shard_worker CHANNEL PARENT_PID``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("endpoint")
    parser.add_argument("parent_pid", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return serve(args.endpoint, args.parent_pid)


if __name__ == "__main__":
    sys.exit(main())
