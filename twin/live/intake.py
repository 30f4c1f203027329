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
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

import numpy as np
import zmq

from robots.bullet import pb
from sync.monitor import SocketMonitor
from sync.protocol import Header, Kind, Received, topic
from sync.telemetry_keys import TelemetryKeys
from twin.live.ingest import Ingest, take_batch
from twin.live.links import CraneLink, RobotLink
from twin.live.shard_digest import CraneDigest, Digest, RobotDigest, add_counts, joint_values
from twin.live.shards import IngestShards
from twin.world.world import World

_RETIRED_EPOCHS_KEPT: Final = 8
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
    _shard_epochs: dict[str, tuple[int, int, int, deque[int]]]
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
        """With ingest workers: apply their waiting digests (``limit`` and the deadline in
        digests); returns how many were applied."""
        shards = self.shards
        assert shards is not None
        handled = 0
        while handled < limit:
            digests = shards.take(min(64, limit - handled))
            if not digests:
                break
            for digest in digests:
                try:
                    self.apply_digest(digest)
                except Exception as exc:  # a bug of ours must not stop the twin
                    self.ingest.log_limited(
                        "internal_error", "could not apply a worker's digest: %r", exc
                    )
            handled += len(digests)
            if until_mono_ns is not None and time.monotonic_ns() >= until_mono_ns:
                break
        return handled

    def apply_digest(self, digest: Digest) -> None:
        """One worker's digest into the twin's links and totals (see
        :mod:`twin.live.shards` for how epochs of two workers meet)."""
        mono_ns = time.monotonic_ns()
        ingest = self.ingest
        ingest.received += digest.received
        ingest.accepted += digest.accepted
        ingest.unattributed += digest.unattributed
        ingest.bytes_in += digest.bytes_in
        ingest.log_suppressed += digest.log_suppressed
        ingest.bad_frames.update(digest.bad_frames)
        ingest.unknown_sources.update(digest.unknown_sources)
        self.ingest_monitor.counts.update(digest.connections)
        on_event = ingest.on_event  # the ingest's events, as the one-process twin raises them
        for kind, source, detail in digest.events:
            on_event(kind, source, detail)
        touched: list[RobotLink] = []
        for found in digest.robots:
            link = self.robots.get(found.robot_id)
            if link is not None and self._take_robot(link, found, digest.worker, mono_ns):
                touched.append(link)
        for crane_found in digest.cranes:
            crane = self.cranes.get(crane_found.crane_id)
            if crane is not None:
                _take_crane(crane, crane_found, mono_ns)
        if digest.frames:
            for frame_sink in self.frame_sinks:
                feed = frame_sink.frames
                for received_ns, group in digest.frames:
                    for frames in group:
                        feed(received_ns, frames)
        for frame_sink in self.frame_sinks:
            frame_sink.ship(mono_ns)
        for link in touched:  # the newest state of each, while the budget lasts
            if self._apply_spent_ns >= self._apply_budget_ns:
                break
            if link.joints_dirty:
                self._apply_joints(link, mono_ns)

    def _take_robot(self, link: RobotLink, found: RobotDigest, worker: int, mono_ns: int) -> bool:
        """One robot's part of a digest; True if it brought a joint state to apply."""
        link.frames_in += found.frames_in
        link.joint_messages += found.joint_messages
        if found.refused:
            link.refused.update(found.refused)
        link.epochs_interleaved += found.epochs_interleaved
        streams = link.streams
        for kind, counts in found.streams.items():
            tracker = streams.get(kind)  # type: ignore[call-overload]  # Kind is an int
            add_counts(tracker or link.tracker(Kind(kind)), counts)
        if found.rate_msgs:
            link.rate_in.add_many(mono_ns, found.rate_msgs, found.bytes_in)
        liveness = link.liveness
        liveness.main_messages += found.main_messages
        liveness.last_rx_ns = max(liveness.last_rx_ns, found.last_rx_ns)
        liveness.last_any_ns = max(liveness.last_any_ns, found.last_any_ns)
        liveness.shutdown = found.shutdown
        link.view_dirty = True
        if found.heartbeat is not None:
            link.heartbeat = found.heartbeat
        if found.base is not None:
            link.base = found.base
            link.base_dirty = True
        if found.joints is None:
            return False
        if not self._epoch_allows(link, found, worker):
            return False
        values = joint_values(found)
        if values is None:
            link.raw_payload, link.raw_joints = found.joints, None
        else:
            link.raw_payload, link.raw_joints = None, values
        link.joints_stamp_ns = found.joints_stamp_ns
        link.joints_dirty = True
        link.delay.on_receive(found.joints_stamp_ns, found.joints_received_ns)
        if self.sinks:
            header = Header(Kind.JOINT_STATE, found.joints_seq, found.joints_stamp_ns, link.epoch)
            topic_frame = topic(Kind.JOINT_STATE, link.robot_id)
            payload = found.joints if values is None else b""
            record = Received(found.joints_received_ns, link.robot_id, header, topic_frame,
                              payload, link.wire_joints())  # fmt: skip
            for sink in self.sinks:
                sink(record)
        return True

    def _epoch_allows(self, link: RobotLink, found: RobotDigest, worker: int) -> bool:
        """Whether a worker's newest joint state may become the robot's: its epoch is the
        robot's (and its sequence newer), or newer than the robot's (a takeover or a
        restarted gateway, told as an event); a retired epoch's state is not applied."""
        held = self._shard_epochs.get(link.robot_id)
        if held is None or link.epoch == 0:
            self._shard_epochs[link.robot_id] = (found.epoch, worker, found.joints_seq, deque())
            link.epoch = found.epoch
            return True
        epoch, owner, seq, retired = held
        if found.epoch == epoch:
            if found.joints_seq <= seq and worker != owner:
                return False  # another connection's older state of the same stream
            self._shard_epochs[link.robot_id] = (epoch, worker, found.joints_seq, retired)
            return True
        if found.epoch in retired:
            link.epochs_interleaved += found.joint_messages
            if link.interleave_told != link.epoch:
                link.interleave_told = link.epoch
                self.ingest.on_event("takeover", link.robot_id,
                           f"js: epoch {found.epoch:#x} still sends after {link.epoch:#x} took "
                           "over (two senders, or an old connection's backlog)")  # fmt: skip
            return False
        retired.append(epoch)
        while len(retired) > _RETIRED_EPOCHS_KEPT:
            retired.popleft()
        if worker != owner:  # the worker's own change was told by the worker already
            detail = f"gateway restarted: new epoch {found.epoch:#x} (another connection)"
            self.ingest.on_event("epoch", link.robot_id, detail)
        link.delay.reset()
        link.epoch = found.epoch
        self._shard_epochs[link.robot_id] = (found.epoch, worker, found.joints_seq, retired)
        return True

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


def _take_crane(crane: CraneLink, found: CraneDigest, mono_ns: int) -> None:
    crane.frames_in += found.frames_in
    crane.refused.update(found.refused)
    add_counts(crane.stream, found.stream)
    if found.rate_msgs:
        crane.rate_in.add_many(mono_ns, found.rate_msgs, found.bytes_in)
    crane.liveness.last_rx_ns = max(crane.liveness.last_rx_ns, found.last_rx_ns)
    crane.liveness.last_any_ns = crane.liveness.last_rx_ns
    if found.state is not None and found.stamp_ns >= crane.stamp_ns:
        crane.state = found.state
        crane.stamp_ns = found.stamp_ns
        crane.dirty = True
    crane.view_dirty = True


def _column(values: np.ndarray) -> list[list[float]]:
    """[[v0], [v1], ...]: one value per single-degree-of-freedom joint, as PyBullet wants."""
    column: list[list[float]] = values.reshape(-1, 1).tolist()
    return column
