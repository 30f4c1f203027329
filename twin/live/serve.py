"""The twin's outward face: fan-out updates and events to viewers, snapshot and status replies.

A mixin of :class:`twin.live.mirror.Mirror` (it uses the mirror's links, world, sockets and
counters); kept apart because answering viewers is a different job from mirroring. The
mirror's thread only encodes: fan-out sends never block (PUB drops at its high-water mark),
and snapshot/status requests are answered by :class:`sync.replies.ReplyServer` in a process
of its own from the encodings :meth:`FanoutServer.refresh_replies` hands it.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from sync.fanout import ENCODER, EVENT, STATE, Event, Snapshot, StateUpdate
from sync.monitor import SocketMonitor
from sync.replies import ReplyServer
from sync.streams import Liveness
from sync.telemetry_keys import TelemetryKeys
from twin.live.gate import CommandGate
from twin.live.ingest import Ingest
from twin.live.links import CraneLink, RobotLink
from twin.live.shards import IngestShards
from twin.world.world import World

log = logging.getLogger(__name__)


class FanoutServer:
    """Fan-out publishing and request serving, over the state a Mirror keeps."""

    scene_name: str
    world: World
    robots: dict[str, RobotLink]
    cranes: dict[str, CraneLink]
    ingest: Ingest
    events: deque[Event]
    event_sinks: list[Callable[[Event], None]]
    """Also told of every event, on the mirror's thread (each must be quick, never raise)."""
    run_id: int
    fanout_seq: int
    fanout_dropped: int
    tick_hz: float
    display_hz: float
    ticks: int
    tick_overruns: int
    world_updates: int
    world_update_deferrals: int
    joint_states_applied: int
    gate: CommandGate | None
    lessons_status: Callable[[], dict[str, Any]] | None
    _started_mono_ns: int
    _fanout: zmq.Socket[bytes]
    requests: ReplyServer
    ingest_monitor: SocketMonitor
    shards: IngestShards | None
    telemetry_keys: TelemetryKeys | None
    _snapshot_seq: int = -1
    _status_made_mono_ns: int = 0

    def _next_seq(self) -> int:
        self.fanout_seq += 1
        return self.fanout_seq

    def publish_update(self) -> None:
        """Publish robots and cranes that changed since the last update (if any)."""
        robots = [link for link in self.robots.values() if link.view_dirty]
        cranes = [c for c in self.cranes.values() if c.view_dirty]
        if not robots and not cranes:
            return
        views = [link.view() for link in robots]
        for link, view in zip(robots, views, strict=True):
            link.last_view = view  # the snapshot reuses what was published
        update = StateUpdate(
            run_id=self.run_id,
            seq=self._next_seq(),
            stamp_ns=time.time_ns(),
            robots=views,
            cranes=[c.view(self.world.crane_positions(c.crane_id)) for c in cranes],
        )
        body = ENCODER.encode(update)
        now_mono = time.monotonic_ns()
        share = len(body) // max(1, len(robots))  # bytes of this update per robot
        for link in robots:
            link.view_dirty = False
            link.rate_out.add(now_mono, share)
        for crane in cranes:
            crane.view_dirty = False
        self._send_fanout(STATE, body)

    def _send_fanout(self, kind: bytes, body: bytes) -> None:
        try:
            self._fanout.send_multipart((kind, body), zmq.NOBLOCK)
        except zmq.Again:  # PUB drops rather than blocks; viewers see the sequence gap
            self.fanout_dropped += 1

    def event(self, kind: str, source: str, detail: str) -> None:
        """Tell the viewers (fan-out) and the event list that something happened."""
        event = Event(
            run_id=self.run_id,
            seq=self._next_seq(),
            stamp_ns=time.time_ns(),
            kind=kind,
            source_id=source,
            detail=detail,
        )
        self.events.append(event)
        log.info("%s %s: %s", kind, source, detail)
        self._send_fanout(EVENT, ENCODER.encode(event))
        for sink in self.event_sinks:
            sink(event)

    def snapshot(self) -> Snapshot:
        """The full state, stamped with the current fan-out sequence number."""
        return Snapshot(
            run_id=self.run_id,
            seq=self.fanout_seq,
            stamp_ns=time.time_ns(),
            scene=self.scene_name,
            robots=[link.last_view or link.view() for link in self.robots.values()],
            cranes=[c.view(self.world.crane_positions(c.crane_id)) for c in self.cranes.values()],
        )

    def _request_counters(self) -> dict[str, int]:
        counters = dict(self.requests.counters)
        counters["shed"] = sum(v for k, v in counters.items() if k.startswith("shed_"))
        return counters

    def refresh_replies(
        self, now_mono_ns: int, *, snapshot: bool = True, force: bool = False
    ) -> None:
        """Leave fresh encodings for the request server: the snapshot (when ``snapshot``,
        right after a fan-out update, and the fan-out moved on since the last one), and the
        status when someone waits for one (at most once per display period)."""
        server = self.requests
        server.poll()
        if snapshot:
            self.ingest_monitor.poll()
        if force or (snapshot and self.fanout_seq != self._snapshot_seq):
            self._snapshot_seq = self.fanout_seq
            server.publish_snapshot(ENCODER.encode(self.snapshot()))
        period_ns = int(1e9 / self.display_hz)
        if force or (server.status_wanted and now_mono_ns - self._status_made_mono_ns >= period_ns):
            self._status_made_mono_ns = now_mono_ns
            server.publish_status(json.dumps(self.status()).encode())

    def status(self) -> dict[str, Any]:
        """Everything ``twin status`` shows."""
        self.ingest_monitor.poll()
        now_mono = time.monotonic_ns()
        rows = [link.status(now_mono) for link in self.robots.values()]
        ingest = self.ingest
        return {
            "scene": self.scene_name,
            "uptime_s": round((now_mono - self._started_mono_ns) / 1e9, 3),
            "tick_hz": self.tick_hz,
            "ticks": self.ticks,
            "tick_overruns": self.tick_overruns,
            "joint_states_applied": self.joint_states_applied,
            "world_updates": self.world_updates,
            "world_update_deferrals": self.world_update_deferrals,
            "robots": rows,
            "cranes": [c.status() for c in self.cranes.values()],
            # None: no command channel (the twin runs without --keys)
            "dispatch": self.gate.status() if self.gate is not None else None,
            "lessons": (
                self.lessons_status()
                if self.lessons_status is not None
                else {"enabled": False, "why_off": "twin live --no-lessons, or no detectors"}
            ),
            "totals": {
                "received": ingest.received,
                "accepted": ingest.accepted,
                "unattributed": ingest.unattributed,
                "joined_mid_epoch": sum(r["joined_mid_epoch"] for r in rows),
                "epochs_interleaved": sum(r["epochs_interleaved"] for r in rows),
                "telemetry_keys": self.telemetry_keys is not None,
                "bytes_in": ingest.bytes_in,
                "gaps": sum(r["gaps"] for r in rows),
                "bad_frames": dict(ingest.bad_frames),
                "unknown_sources": dict(ingest.unknown_sources),
                "live": sum(1 for r in rows if r["liveness"] == Liveness.LIVE),
                "fanout_seq": self.fanout_seq,
                "fanout_dropped": self.fanout_dropped,
                "bad_requests": self.requests.counters["bad_requests"],
                "log_lines_suppressed": ingest.log_suppressed,
                # connections ZeroMQ accepted and lost: a frame over 1 MiB (ZMQ_MAXMSGSIZE)
                # makes it drop the sender's connection, counted here as `disconnected`
                "ingest_connections": dict(self.ingest_monitor.counts),
                # twin live --workers N: the ingest worker processes (None: ingest in-process)
                "ingest_workers": self.shards.status() if self.shards is not None else None,
            },
            "requests": self._request_counters(),
        }
