"""The mirror's hot path: the ingest socket drained in batches, states applied within a budget.

A mixin of :class:`twin.live.mirror.Mirror` (it uses the mirror's socket, links, world and
counters); kept apart because it is the one part of the twin that runs per message (tens of
thousands a second), so it is written for that:

- :meth:`Intake.drain` takes what waits in the socket in batches of up to ``BATCH``
  messages (plain ``recv`` calls, no per-message clock reads: one receive stamp per batch),
  has the batch's fixed-layout joint payloads checked in one numpy pass
  (:meth:`twin.live.ingest.Ingest.screen`), then accounts for every message one by one
  (counters, sequence and epoch tracking, liveness and the sinks see each message as if
  it had been handled alone). A frame sink (:class:`FrameSink`, the recorder) is handed
  each accepted message's frames as they are, and told to pass them on after the batch.
- A joint state is *applied* when it becomes the twin's state of the robot
  (:meth:`twin.live.links.RobotLink.take_joints`, the applied time, a latency sample; its
  SI arrays are made when first read): what the fan-out, snapshots, status, the failure
  detectors and the dispatch gate read. After each batch the robots it brought joint
  states for get their *newest* state applied (states superseded within the batch never
  are), within a time budget of 40 % of each tick period; beyond it states are only
  recorded and the next tick applies the newest state of every robot that changed, round
  robin, within the same budget (:meth:`Intake.apply_pending`). Ingest always gets the
  rest of the time, so under overload the twin lags by a bounded number of ticks instead
  of the ingest queue overflowing and losing messages.
- The PyBullet bodies follow the applied states only when something reads them
  (:meth:`Intake.sync_world`): setting a robot's joints in PyBullet costs 15-30 us, and in
  the live twin only the collision detector and whoever holds the world after the loop
  stops read it (the viewers pose their own kinematic world from the fan-out). So the
  mirror syncs the world before each run of the detectors and when its loop ends; a robot
  whose state did not change since is not touched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final, Protocol

import numpy as np
import zmq

from robots.bullet import pb
from sync.monitor import SocketMonitor
from sync.protocol import Kind, Received
from sync.telemetry_keys import TelemetryKeys
from twin.live.ingest import Ingest, take_batch
from twin.live.links import CraneLink, RobotLink
from twin.live.shard_digest import Digest
from twin.live.shard_merge import DigestMerger
from twin.live.shards import IngestShards
from twin.world.world import World

BATCH: Final = 128
"""Messages taken from the socket before they are handled (and the deadline looked at)."""

Sink = Callable[[Received], None]


class FrameSink(Protocol):
    """A sink of accepted messages as the wire carried them (the recorder's process feed):
    cheaper than a :data:`Sink`, no :class:`~sync.protocol.Received` is made."""

    def frames(self, received_ns: int, frames: list[bytes]) -> None:
        """One accepted message: ``[topic, 32-byte header, payload]``."""

    def ship(self, now_mono_ns: int) -> None:
        """After each batch and each tick: pass on what was gathered, if it is time."""


class Intake:
    """Batched ingest and budgeted world updates, over the state a Mirror keeps."""

    world: World
    ingest: Ingest
    ingest_monitor: SocketMonitor
    shards: IngestShards | None
    merger: DigestMerger | None
    robots: dict[str, RobotLink]
    cranes: dict[str, CraneLink]
    sinks: list[Sink]
    frame_sinks: list[FrameSink]
    telemetry_keys: TelemetryKeys | None
    world_updates: int
    world_update_deferrals: int
    joint_states_applied: int
    _ingest: zmq.Socket[bytes]
    _bodies: dict[str, int]
    _apply_order: list[RobotLink]
    _apply_start: int
    _apply_budget_ns: int
    _apply_spent_ns: int

    def drain(self, *, until_mono_ns: int | None = None, limit: int = 100_000) -> int:
        """Handle waiting messages until none is left, the deadline, or ``limit``."""
        handled = 0
        if self.shards is not None:  # ingest runs in worker processes: take their digests
            return self.take_digests(until_mono_ns=until_mono_ns, limit=limit)
        recv = self._ingest.recv
        keyed = self.telemetry_keys is not None
        while handled < limit:
            batch, peers, empty = take_batch(recv, min(BATCH, limit - handled), keyed)
            if batch:
                mono_ns = time.monotonic_ns()
                self.handle_batch(batch, time.time_ns(), mono_ns, peers if keyed else None)
                handled += len(batch)
            if empty or (until_mono_ns is not None and time.monotonic_ns() >= until_mono_ns):
                break
        return handled

    def take_digests(self, *, until_mono_ns: int | None = None, limit: int = 100_000) -> int:
        """With ingest workers: apply their waiting digests until none is left, the
        deadline, or ``limit`` messages (what the digests accepted); returns that count."""
        shards, merger = self.shards, self.merger
        assert shards is not None and merger is not None
        handled = 0
        while handled < limit:
            digests = shards.take(16)
            if not digests:
                break
            for digest in digests:
                handled += max(1, digest.accepted)
                mono_ns = time.monotonic_ns()
                try:
                    touched, refused = merger.apply(digest, mono_ns, self.sinks)
                except Exception as exc:  # a bug of ours must not stop the twin
                    self.ingest.log_limited(
                        "internal_error", "could not apply a worker's digest: %r", exc
                    )
                    continue
                self._feed_frames(digest, refused, mono_ns)
                for link in touched:  # the newest state of each, while the budget lasts
                    if self._apply_spent_ns >= self._apply_budget_ns:
                        break
                    if link.joints_dirty:
                        self._apply_joints(link, mono_ns)
            if until_mono_ns is not None and time.monotonic_ns() >= until_mono_ns:
                break
        return handled

    def _feed_frames(self, digest: Digest, refused: set[bytes], mono_ns: int) -> None:
        """A digest's accepted frames to the frame sinks (the recorder), as they came."""
        if digest.frames:
            for frame_sink in self.frame_sinks:
                feed = frame_sink.frames
                for received_ns, group in digest.frames:
                    for frames in group:
                        if not refused or frames[0] not in refused:
                            feed(received_ns, frames)
        for frame_sink in self.frame_sinks:
            frame_sink.ship(mono_ns)

    def handle(
        self, frames: list[bytes], received_ns: int, mono_ns: int, peer: bytes | None = None
    ) -> None:
        """Account for one message (``peer``: its connection's key, with keys); apply a joint
        state at once if the budget allows."""
        self.handle_batch([frames], received_ns, mono_ns, [peer])

    def handle_batch(
        self,
        batch: list[list[bytes]],
        received_ns: int,
        mono_ns: int,
        peers: list[bytes | None] | None,
    ) -> None:
        """Account for a batch of messages received together (``peers``: each one's
        connection key, with keys), then apply the newest joint state of each robot it
        brought, while the tick's budget lasts."""
        ingest = self.ingest
        sinks = self.sinks
        feeds = [sink.frames for sink in self.frame_sinks]
        screened = ingest.screen(batch)
        touched: dict[str, RobotLink] = {}
        for i, frames in enumerate(batch):
            accepted = ingest.handle(
                frames, received_ns, mono_ns, peers[i] if peers else None, screened[i]
            )
            if accepted is None:
                continue
            link, kind, header = accepted
            values = None
            if isinstance(link, RobotLink):
                source = link.robot_id
                if kind == Kind.JOINT_STATE:
                    touched[source] = link
                    if sinks:
                        values = link.wire_joints()
            else:
                source = link.crane_id
            if sinks:
                record = Received(received_ns, source, header, frames[0], frames[2], values)
                for sink in sinks:
                    sink(record)
            for feed in feeds:
                feed(received_ns, frames)
        for frame_sink in self.frame_sinks:
            frame_sink.ship(mono_ns)
        for link in touched.values():  # the newest state of each, while the budget lasts
            if self._apply_spent_ns >= self._apply_budget_ns:
                break
            if link.joints_dirty:
                self._apply_joints(link, mono_ns)

    def _apply_joints(self, link: RobotLink, mono_ns: int) -> None:
        started = time.perf_counter_ns()
        link.take_joints()
        link.world_behind = True
        link.applied_mono_ns = mono_ns
        link.delay.on_applied(link.joints_stamp_ns, time.time_ns())
        self.joint_states_applied += 1
        self._apply_spent_ns += time.perf_counter_ns() - started

    def sync_world(self) -> int:
        """Put every robot's applied joint state into the PyBullet world where the world is
        behind it; return how many robots were updated."""
        client = self.world.client
        updated = 0
        for link in self._apply_order:
            joints = link.joints
            if not link.world_behind or joints is None:
                continue
            pb.resetJointStatesMultiDof(
                self._bodies[link.robot_id],
                link.joint_indices,
                targetValues=_column(joints.positions),
                targetVelocities=_column(joints.velocities),
                physicsClientId=client,
            )
            link.world_behind = False
            updated += 1
        self.world_updates += updated
        return updated

    def apply_pending(self, now_mono: int) -> None:
        """Apply changed joint states, round robin, within the tick's time budget."""
        order = self._apply_order
        count = len(order)
        for step in range(count):
            link = order[(self._apply_start + step) % count]
            if not link.joints_dirty:
                continue
            if self._apply_spent_ns >= self._apply_budget_ns:
                self.world_update_deferrals += sum(1 for other in order if other.joints_dirty)
                self._apply_start = (self._apply_start + step) % count  # first next tick
                return
            self._apply_joints(link, now_mono)


def _column(values: np.ndarray) -> list[list[float]]:
    """[[v0], [v1], ...]: one value per single-degree-of-freedom joint, as PyBullet wants."""
    column: list[list[float]] = values.reshape(-1, 1).tolist()
    return column
