"""The live mirror: telemetry in, the PyBullet world kept in step, state out to viewers.

One thread, one loop (:meth:`Mirror.run`): it drains the ingest socket until the
next tick is due, and on every tick (240 Hz by default) applies pending states, updates
liveness and, at display rate, publishes what changed to the viewers and leaves fresh
snapshot/status encodings for the reply server, which answers requests in a process of
its own (:mod:`sync.replies`): no reader can delay ingest.

The per-message part, draining the socket in batches and applying the newest state of each
robot to the world within a time budget, is :class:`twin.live.intake.Intake` (a mixin).

A bad frame is counted, logged (rate-limited) and dropped; it never stops the loop.
Every accepted message is handed to the registered sinks (:attr:`Mirror.sinks`, e.g. the
dispatch gate), and its frames to the frame sinks (:attr:`Mirror.frame_sinks`: the recorder,
which records in a process of its own, :mod:`twin.record.recorder_process`).
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import msgspec
import zmq

from robots import get_model
from robots.bullet import pb
from scenes.model import Scene
from sync.addresses import (
    FANOUT_SNDHWM,
    INGEST_RCVHWM,
    MAX_MESSAGE_BYTES,
    Endpoints,
    close_quietly,
)
from sync.fanout import Event
from sync.monitor import SocketMonitor
from sync.protocol import Received
from sync.replies import ReplyServer
from sync.streams import PERCENTILES_EVERY_NS, Liveness
from sync.telemetry_keys import TelemetryAuth, TelemetryKeys
from twin.failures.events import FailureEvent
from twin.failures.monitors import Monitors
from twin.live.gate import CommandGate
from twin.live.ingest import Ingest
from twin.live.intake import FrameSink, Intake, Sink
from twin.live.links import CraneLink, RobotLink, crane_links
from twin.live.serve import FanoutServer
from twin.live.shard_merge import DigestMerger
from twin.live.shards import IngestShards
from twin.world.crane import CraneLimitError
from twin.world.world import World

log = logging.getLogger(__name__)

DEFAULT_TICK_HZ: Final = 240.0
DEFAULT_DISPLAY_HZ: Final = 30.0
_EVENTS_KEPT: Final = 1000
_APPLY_BUDGET_FRACTION: Final = 0.4
_TICK_DRAIN_LIMIT: Final = 2000
_LATE_TICK_NS: Final = 10_000_000
_HELD_TICKS_MAX: Final = 2
_NOTEWORTHY: Final = frozenset({Liveness.STALE, Liveness.GONE})


class MirrorError(RuntimeError):
    """The scene cannot be mirrored (said why, in one line)."""


__all__ = [
    "DEFAULT_DISPLAY_HZ",
    "DEFAULT_TICK_HZ",
    "FrameSink",
    "Mirror",
    "MirrorError",
    "Received",
    "Sink",
]


class Mirror(Intake, FanoutServer):
    """Mirror a live hall into a PyBullet world; serve viewers and status requests."""

    def __init__(
        self,
        scene: Scene,
        endpoints: Endpoints,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        tick_hz: float = DEFAULT_TICK_HZ,
        display_hz: float = DEFAULT_DISPLAY_HZ,
        keys: Path | None = None,
        workers: int = 1,
    ) -> None:
        """``keys``: a key directory; telemetry is then CURVE-authenticated and each frame
        must come from a key bound to its robot or crane (:mod:`sync.telemetry_keys`);
        KeyDirError for a directory that cannot be used. ``workers`` > 1: ingest in that
        many worker processes sharing the ingest port (:mod:`twin.live.shards`;
        ShardError if they cannot start)."""
        self.scene = scene
        self.scene_name = scene.name
        self.tick_hz = tick_hz
        self.display_hz = display_hz
        self._tick_ns = int(1e9 / tick_hz)
        self.world = World(scene)
        self.sinks: list[Sink] = []
        self.frame_sinks: list[FrameSink] = []  # the recorder (twin.record.recorder_process)
        self.robots: dict[str, RobotLink] = {}
        try:
            for robot in scene.robots:
                handle = self.world.robot(robot.id)
                model = get_model(robot.model)
                position, orientation = self.world.base_pose(robot.id)
                self.robots[robot.id] = RobotLink(
                    robot_id=robot.id,
                    model=model,
                    task=robot.task,
                    home_position_m=position,
                    home_orientation_xyzw=orientation,
                    joint_indices=[handle.joint_index[n] for n in model.profile.joint_names],
                )
        except ValueError as exc:  # e.g. a model no telemetry encoding can carry
            self.world.close()
            raise MirrorError(f"robot {robot.id!r} cannot be mirrored: {exc}") from None
        self._bodies = {rid: self.world.robot(rid).body for rid in self.robots}
        for index, link in enumerate(self.robots.values()):  # status percentiles take turns
            link.delay.phase_ns = index * PERCENTILES_EVERY_NS // len(self.robots)
        self.cranes = crane_links(scene)
        self.ingest = Ingest(scene.name, self.robots, self.cranes, self.event)
        self.ticks = 0
        self.tick_overruns = 0
        self.world_updates = 0  # robots' joints put into PyBullet (Intake.sync_world)
        self.joint_states_applied = 0
        self.world_update_deferrals = 0
        self._last_tick_mono_ns = time.monotonic_ns()
        self._held_ticks = 0
        self._apply_order: list[RobotLink] = list(self.robots.values())
        self._apply_start = 0
        self._apply_budget_ns = int(self._tick_ns * _APPLY_BUDGET_FRACTION)
        self._apply_spent_ns = 0
        self.fanout_seq = 0
        self.run_id = secrets.randbits(63) | 1
        self.fanout_dropped = 0
        self.events: deque[Event] = deque(maxlen=_EVENTS_KEPT)
        self.event_sinks: list[Callable[[Event], None]] = []
        # failure detection (time-gated inside Monitors); `twin live` sets one by default
        self.monitors: Monitors | None = None
        self.on_failure: list[Callable[[FailureEvent], None]] = []
        self.after_monitors: list[Callable[[int], None]] = []
        """Called after each run of the detectors with the wall-clock time (ns)."""
        # the dispatch gate (`twin live --keys`); None: no command channel at all
        self.gate: CommandGate | None = None
        self.lessons_status: Callable[[], dict[str, Any]] | None = None
        """The ``lessons`` part of ``twin status`` (`twin live` sets it; None: lessons off)."""
        self._started_mono_ns = time.monotonic_ns()
        self._owns_context = context is None
        self.context = context or zmq.Context()
        self.telemetry_keys: TelemetryKeys | None = None
        self._telemetry_auth: TelemetryAuth | None = None
        self.shards: IngestShards | None = None
        self.merger: DigestMerger | None = None
        if keys is not None:
            try:
                self.telemetry_keys = TelemetryKeys(keys)
                if workers <= 1:  # with workers, each authenticates its own connections
                    self._telemetry_auth = TelemetryAuth(self.telemetry_keys)
            except BaseException:
                self.world.close()
                raise
            self.ingest.authorise = self.telemetry_keys.may_speak_for
        self._ingest = (
            self._telemetry_auth.socket(zmq.SUB)
            if self._telemetry_auth is not None
            else self.context.socket(zmq.SUB)
        )
        self._fanout = self.context.socket(zmq.PUB)
        try:
            self.ingest_monitor = SocketMonitor(self._ingest)  # connections ZeroMQ drops
            self._ingest.setsockopt(zmq.RCVHWM, INGEST_RCVHWM)
            self._ingest.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            self._ingest.setsockopt(zmq.SUBSCRIBE, b"")
            self._fanout.setsockopt(zmq.SNDHWM, FANOUT_SNDHWM)
            for socket in (self._ingest, self._fanout):
                socket.setsockopt(zmq.LINGER, 0)
            if workers > 1:
                self.shards = IngestShards(
                    scene, endpoints.ingest, workers, keys=keys, context=self.context
                )
                self.merger = DigestMerger(
                    self.robots, self.cranes, self.ingest, self.ingest_monitor
                )
            # the endpoints actually bound ("tcp://127.0.0.1:*" picks a free port)
            self.endpoints = Endpoints(
                ingest=(
                    self.shards.endpoint
                    if self.shards is not None
                    else _bind(self._ingest, endpoints.ingest, "ingest")
                ),
                fanout=_bind(self._fanout, endpoints.fanout, "fan-out"),
                snapshot=endpoints.snapshot,  # below: bound by the reply server
            )
            self.requests = ReplyServer(self.context, endpoints.snapshot)
            self.endpoints = dataclasses.replace(self.endpoints, snapshot=self.requests.endpoint)
        except BaseException:
            self.close()
            raise

    # -- lifetime ---------------------------------------------------------------

    def close(self) -> None:
        """Close sockets (linger 0), the dispatch gate and the world."""
        if self.gate is not None:
            self.gate.close()
            self.gate = None
        if hasattr(self, "requests"):
            self.requests.close()  # stops the reply server's process
        if self.shards is not None:
            self.shards.close()
            self.shards = None
        if hasattr(self, "ingest_monitor"):
            self.ingest_monitor.close()
        for socket in (self._ingest, self._fanout):
            close_quietly(socket)
        if self._telemetry_auth is not None:
            self._telemetry_auth.close()
        if self._owns_context:
            self.context.term()
        self.world.close()

    def run(self, *, stop: threading.Event | None = None, duration_s: float | None = None) -> None:
        """Serve until ``stop`` is set or ``duration_s`` has passed."""
        poller = zmq.Poller()
        inputs: list[zmq.Socket[bytes]] = [self._ingest]
        if self.shards is not None:
            inputs = self.shards.channels
            self.shards.configure(frames=bool(self.frame_sinks))
        for socket in inputs:
            poller.register(socket, zmq.POLLIN)
        self.refresh_replies(time.monotonic_ns(), force=True)
        # What exists now (the world, models, scene, libraries) lives as long as the twin:
        # frozen, a full collection later scans only what the run made. Unfrozen, each one
        # scanned every object: 200-250 ms with 300-400k of them (a test process), a pause
        # of ingest (every thread waits for the collector).
        gc.collect()
        gc.freeze()
        command = control = None
        if self.gate is not None:
            command, control = self.gate.sockets
            poller.register(command, zmq.POLLIN)
            poller.register(control, zmq.POLLIN)
        display_every = max(1, round(self.tick_hz / self.display_hz))
        start = time.monotonic_ns()
        end = start + int(duration_s * 1e9) if duration_s is not None else None
        next_tick = start
        while not (stop is not None and stop.is_set()):
            now = time.monotonic_ns()
            if end is not None and now >= end:
                break
            if now < next_tick:
                wait_ms = -(-(next_tick - now) // 1_000_000)  # round up: never spin
                ready = dict(poller.poll(wait_ms))
                if any(socket in ready for socket in inputs):
                    self.drain(until_mono_ns=next_tick)
                if self.gate is not None:
                    if command in ready:
                        self.gate.serve_command()
                    if control in ready:
                        self.gate.serve_control()
                continue
            self.tick(publish=self.ticks % display_every == 0)
            next_tick += self._tick_ns
            behind = time.monotonic_ns() - next_tick
            if behind > 10 * self._tick_ns:  # overloaded: skip ticks rather than pile up
                self.tick_overruns += 1
                next_tick = time.monotonic_ns() + self._tick_ns
        self.sync_world()  # whoever holds the world after the loop sees the newest states

    # -- tick -------------------------------------------------------------------

    def tick(self, *, publish: bool = True) -> None:
        """Apply pending states to the world, update liveness, publish if asked."""
        self.ticks += 1
        client = self.world.client
        # what already waits in the socket is not late: take it in before judging liveness
        # (a GC pause or a starved CPU of ours must not make robots look STALE); after a
        # late tick, or with messages still waiting, liveness may only improve (twice at most)
        drained = self.drain(limit=_TICK_DRAIN_LIMIT) < _TICK_DRAIN_LIMIT
        now_mono = time.monotonic_ns()
        on_time = now_mono - self._last_tick_mono_ns <= self._tick_ns + _LATE_TICK_NS
        self._last_tick_mono_ns = now_mono
        look = (drained and on_time) or self._held_ticks >= _HELD_TICKS_MAX
        self._held_ticks = 0 if look else self._held_ticks + 1
        self._apply_spent_ns = 0  # a fresh budget for this tick period
        self.apply_pending(now_mono)
        for link in self.robots.values():
            if link.base_dirty and link.base is not None:
                pb.resetBasePositionAndOrientation(
                    self._bodies[link.robot_id],
                    link.base.position_m,
                    link.base.orientation_xyzw,
                    physicsClientId=client,
                )
                link.base_dirty = False
            state = link.liveness.judge(now_mono, may_worsen=look)
            if state != link.reported:
                # a stream that stopped (not one that has not begun: GONE -> STALE)
                link.went_stale += state == Liveness.STALE and link.reported != Liveness.GONE
                link.went_late += state == Liveness.LATE and link.reported == Liveness.LIVE
                if _NOTEWORTHY & {state, link.reported}:  # LIVE <-> LATE jitter is no event
                    self.event("liveness", link.robot_id, f"{link.reported} -> {state}")
                link.reported = state
                link.reported_since_ns = now_mono
                link.view_dirty = True
            link.roll_rates(now_mono)
        for crane in self.cranes.values():
            self._tick_crane(crane, now_mono)
        for frame_sink in self.frame_sinks:
            frame_sink.ship(now_mono)
        if publish:
            if self.shards is not None:
                for line in self.shards.check():
                    log.warning("%s", line)
            self.publish_update()
        self.refresh_replies(now_mono, snapshot=publish)
        if self.monitors is not None and self.monitors.due(now_mono):
            self.sync_world()  # the collision detector reads PyBullet
            self._run_monitors(self.monitors)
        if self.gate is not None:
            self.gate.expire(now_mono)
        if self.telemetry_keys is not None:
            self.telemetry_keys.reload_if_changed(now_mono)  # add/revoke, no restart

    def _run_monitors(self, monitors: Monitors) -> None:
        """Run the failure detectors; publish and hand out what they found."""
        now_mono = time.monotonic_ns()
        for failure in monitors.check(now_mono, self.robots, self.world):
            # stamp on the wall clock, like every other event
            failure = msgspec.structs.replace(failure, stamp_ns=time.time_ns())
            self.event("failure", failure.robot_id, msgspec.json.encode(failure).decode())
            for callback in self.on_failure:
                callback(failure)
        for after in self.after_monitors:
            after(time.time_ns())

    def _tick_crane(self, crane: CraneLink, now_mono: int) -> None:
        if crane.dirty and crane.state is not None:
            crane.dirty = False
            try:
                self.world.set_crane(
                    crane.crane_id,
                    bridge_m=crane.state.bridge_m,
                    trolley_m=crane.state.trolley_m,
                    hoist_m=crane.state.hoist_m,
                )
            except CraneLimitError as exc:
                crane.refused_by_world += 1
                self.ingest.log_limited("crane_travel", "crane state refused: %s", exc)
        state = crane.liveness.state(now_mono)
        if state != crane.reported:
            self.event("liveness", crane.crane_id, f"{crane.reported} -> {state}")
            crane.reported = state
            crane.view_dirty = True
        crane.rate_in.roll(now_mono)


def _bind(socket: zmq.Socket[bytes], endpoint: str, what: str) -> str:
    """Bind; return the endpoint actually bound."""
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as exc:
        raise OSError(f"cannot bind the {what} socket to {endpoint}: {exc}") from None
    bound = socket.getsockopt(zmq.LAST_ENDPOINT)
    return bound.decode() if isinstance(bound, bytes) else str(bound)
