"""Replay of a twin recording as a viewer source, with a timeline.

:class:`ReplaySource` reads a recording (:func:`twin.recording.open_recording`) once, at
open, into an in-memory index: per robot numpy arrays of log times and joint positions,
velocities, efforts, base poses and heartbeats; per crane its log times and travel; and
one merged, time-sorted array of every state message. Seeking is then a
``searchsorted`` per stream (never a re-read), and playing forward applies only the
messages between the previous and the new instant.

Times on the timeline are seconds from the recording's first message (``t_s``); the
state at ``t_s`` is, for every stream, the newest message logged at or before it. A
robot whose newest joint state is older than three of its nominal periods and at least
``STALE_FLOOR_S`` (or that has none yet) shows as ``STALE``, else ``REPLAY``. It never
opens a socket.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections.abc import Iterator
from typing import Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from robots import get_model
from scenes import parse_scene
from scenes.model import Scene
from sync.fanout import CraneView, Event, RobotView
from twin.recording import Recording, RecordingError
from twin.recording_schemas import CraneMsg, EventMsg, HeartbeatMsg, JointMsg, PoseInFrame
from viz.replay_events import ReplayEvent, event_id
from viz.replay_index import Stream as _Stream

log = logging.getLogger(__name__)

REPLAY: Final = "REPLAY"
STALE: Final = "STALE"
STALE_PERIODS: Final = 3.0
STALE_FLOOR_S: Final = 0.25
MIN_SPEED: Final = 0.1
MAX_SPEED: Final = 10.0
_NS: Final = 1_000_000_000


Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]


def _at_rest_pose(scene: Scene, robot_id: str) -> tuple[Vec3, Quat]:
    """Where the world puts a robot before any base message: its station, model height."""
    robot = next(r for r in scene.robots if r.id == robot_id)
    model = get_model(robot.model)
    station = scene.station(robot.station)
    x, y, z = station.pose.xyz
    half = station.pose.yaw_rad / 2.0
    aw, az = math.cos(half), math.sin(half)
    bx, by, bz, bw = model.base_orientation_xyzw
    quat = (aw * bx - az * by, aw * by + az * bx, aw * bz + az * bw, aw * bw - az * bz)
    return (x, y, z + model.base_height_m), quat


class ReplaySource:
    """A recording as a viewer :class:`viz.sources.Source`, with seek, play, speed, loop."""

    def __init__(
        self,
        recording: Recording,
        scene: Scene | None = None,
        *,
        stale_floor_s: float = STALE_FLOOR_S,
    ) -> None:
        """``stale_floor_s``: a robot shows STALE only after at least this much silence
        (and three nominal periods): recorded receive times come in bursts, and a 500 Hz
        robot would otherwise flicker STALE between bursts that the live twin took in."""
        self.recording = recording
        self._stale_floor_s = stale_floor_s
        self.scene = scene if scene is not None else parse_scene(recording.scene_text, "scene.yaml")
        self.robot_ids = [r.id for r in self.scene.robots]
        self.crane_ids = [c.id for c in self.scene.cranes]
        self._joints: dict[str, _Stream] = {}
        self._names: dict[str, list[str]] = {}
        self._bases = {rid: _Stream(7) for rid in self.robot_ids}
        self._beats = {rid: _Stream(2) for rid in self.robot_ids}
        self._crane_streams = {cid: _Stream(4, ints=1) for cid in self.crane_ids}
        self.robots: dict[str, RobotView] = {}
        self.cranes: dict[str, CraneView] = {}
        for robot in self.scene.robots:
            model = get_model(robot.model)
            names = list(model.profile.canonical_joint_names)
            self._names[robot.id] = names
            self._joints[robot.id] = _Stream(3 * len(names), ints=2)
            position, orientation = _at_rest_pose(self.scene, robot.id)
            self.robots[robot.id] = RobotView(
                robot_id=robot.id, manufacturer=model.manufacturer, model=model.name,
                task=robot.task, liveness=STALE, stamp_ns=0, epoch=0, joint_names=names,
                positions=[0.0] * len(names), velocities=[0.0] * len(names),
                efforts=[0.0] * len(names), base_position_m=position,
                base_orientation_xyzw=orientation, mode="unknown",
            )  # fmt: skip
        for crane in self.scene.cranes:
            self.cranes[crane.id] = CraneView(
                crane_id=crane.id, liveness=STALE, stamp_ns=0, bridge_m=crane.home.bridge,
                trolley_m=crane.home.trolley, hoist_m=crane.home.hoist, moving=False,
            )  # fmt: skip
        self._rest = {
            r: (v.base_position_m, v.base_orientation_xyzw) for r, v in self.robots.items()
        }
        self._crane_home = {c: (v.bridge_m, v.trolley_m, v.hoist_m) for c, v in self.cranes.items()}
        self.events: list[ReplayEvent] = []
        self._index()
        self._t_s = 0.0
        self._rows = np.full(len(self._order), -1, dtype=np.int64)
        self.speed_x = 1.0
        self.playing = False
        self.loop: tuple[float, float] | None = None
        self._dirty = True
        self._pending: list[ReplayEvent] = []
        self.seek(0.0)

    # -- the index ----------------------------------------------------------------

    def _index(self) -> None:
        robots, cranes = set(self.robot_ids), set(self.crane_ids)
        topics = ["/events"]
        for rid in self.robot_ids:
            topics += [f"/joints/{rid}", f"/base/{rid}", f"/heartbeat/{rid}"]
        topics += [f"/crane/{cid}" for cid in self.crane_ids]
        decode_joint = msgspec.json.Decoder(JointMsg).decode
        decode_pose = msgspec.json.Decoder(PoseInFrame).decode
        decode_beat = msgspec.json.Decoder(HeartbeatMsg).decode
        decode_crane = msgspec.json.Decoder(CraneMsg).decode
        decode_event = msgspec.json.Decoder(EventMsg).decode
        raw_events: list[tuple[int, EventMsg]] = []
        start_ns: int | None = None
        end_ns: int | None = None
        try:
            for message in self.recording.iter_messages(topics):
                t = message.log_time_ns
                start_ns = t if start_ns is None or t < start_ns else start_ns
                end_ns = t if end_ns is None or t > end_ns else end_ns
                kind, _, source = message.topic[1:].partition("/")
                if kind == "joints" and source in robots:
                    js = decode_joint(message.data)
                    stream = self._joints[source]
                    if len(js.position) * 3 != stream.width:
                        stream = self._joints[source] = _Stream(3 * len(js.position), ints=2)
                    if js.name != self._names[source]:
                        self._names[source] = js.name
                    stream.add(t, js.position + js.velocity + js.effort, (js.stamp_ns, js.epoch))
                elif kind == "base" and source in robots:
                    pose = decode_pose(message.data).pose
                    p, q = pose.position, pose.orientation
                    self._bases[source].add(t, (p.x, p.y, p.z, q.x, q.y, q.z, q.w))
                elif kind == "heartbeat" and source in robots:
                    beat = decode_beat(message.data)
                    self._beats[source].add(t, (float(beat.estop), float(beat.protective_stop)))
                    self._beats[source].labels.append(beat.mode)
                elif kind == "crane" and source in cranes:
                    c = decode_crane(message.data)
                    self._crane_streams[source].add(
                        t, (c.bridge_m, c.trolley_m, c.hoist_m, float(c.moving)), (c.stamp_ns,)
                    )
                elif kind == "events":
                    raw_events.append((t, decode_event(message.data)))
        except msgspec.DecodeError as exc:
            raise RecordingError(f"{self.recording.path}: unreadable message ({exc})") from None
        self.start_ns = start_ns if start_ns is not None else 0
        self.end_ns = end_ns if end_ns is not None else self.start_ns
        self.events = sorted(
            (
                ReplayEvent(
                    (t - self.start_ns) / _NS,
                    event_id(e.id, e.kind, e.detail),
                    e.stamp_ns,
                    e.kind,
                    e.source,
                    e.detail,
                )
                for t, e in raw_events
            ),
            key=lambda e: (e.t_s, e.id),
        )
        self._event_t = [e.t_s for e in self.events]
        # one stream list: (kind, owner) per stream; the merged timeline refers to it
        self._order: list[tuple[str, str, _Stream]] = []
        for rid in self.robot_ids:
            self._order += [("joints", rid, self._joints[rid]), ("base", rid, self._bases[rid])]
            self._order.append(("heartbeat", rid, self._beats[rid]))
        self._order += [("crane", cid, self._crane_streams[cid]) for cid in self.crane_ids]
        for _, _, stream in self._order:
            stream.freeze()
        times = [s.log_ns for _, _, s in self._order]
        self._all_ns = np.concatenate(times) if times else np.zeros(0, dtype=np.int64)
        ids = [np.full(len(t), i, dtype=np.int32) for i, t in enumerate(times)]
        rows = [np.arange(len(t), dtype=np.int32) for t in times]
        merged = np.argsort(self._all_ns, kind="stable")
        self._all_ns = self._all_ns[merged]
        self._all_stream = (np.concatenate(ids) if ids else self._all_ns)[merged]
        self._all_row = (np.concatenate(rows) if rows else self._all_ns)[merged]
        self._last_ns = np.full(len(self.robot_ids), -1, dtype=np.int64)
        self._stale_ns = np.array(
            [
                max(
                    self._stale_floor_s * _NS,
                    STALE_PERIODS * _NS / get_model(r.model).profile.rate_hz,
                )
                for r in self.scene.robots
            ]
        )
        self._live = np.zeros(len(self.robot_ids), dtype=bool)
        log.info(
            "replay index: %d state messages, %d events, %.1f s, %.1f MB",
            len(self._all_ns), len(self.events), self.duration_s, self.index_bytes / 1e6,
        )  # fmt: skip

    @property
    def index_bytes(self) -> int:
        """Bytes the in-memory index holds (streams and the merged timeline)."""
        merged = self._all_ns.nbytes + self._all_stream.nbytes + self._all_row.nbytes
        return merged + sum(stream.nbytes for _, _, stream in self._order)

    # -- the timeline ---------------------------------------------------------------

    @property
    def duration_s(self) -> float:
        """Seconds from the first to the last message."""
        return (self.end_ns - self.start_ns) / _NS

    @property
    def t_s(self) -> float:
        """The current instant, seconds from the first message."""
        return self._t_s

    @property
    def speed(self) -> float:
        """Playback speed (1.0 = real time), kept within 0.1..10."""
        return self.speed_x

    @speed.setter
    def speed(self, value: float) -> None:
        self.speed_x = min(MAX_SPEED, max(MIN_SPEED, float(value)))

    def _ns(self, t_s: float) -> int:
        return self.start_ns + round(t_s * _NS)

    def seek(self, t_s: float) -> None:
        """Jump to ``t_s`` (clamped to the recording): every stream's newest state at or before."""
        self._t_s = min(max(0.0, t_s), self.duration_s)
        t_ns = self._ns(self._t_s)
        for i, (_, _, stream) in enumerate(self._order):
            row = int(np.searchsorted(stream.log_ns, t_ns, side="right")) - 1
            if row != self._rows[i]:
                self._rows[i] = row
                self._apply(i, row)
        self._update_liveness(t_ns, force=True)
        self._dirty = True

    def advance(self, dt_s: float) -> float:
        """Play ``dt_s`` of wall time at :attr:`speed` (if playing); returns the new ``t_s``.

        Within a :attr:`loop` window playback wraps to its start; otherwise it stops at
        the end of the recording.
        """
        if not self.playing or dt_s <= 0.0:
            return self._t_s
        old = self._t_s
        new = old + dt_s * self.speed_x
        end = self.duration_s
        if self.loop is not None:
            lo, hi = max(0.0, self.loop[0]), min(end, self.loop[1])
            if old < lo or old > hi:
                self.seek(lo)
                return self._t_s
            if new > hi:
                span = hi - lo
                self.seek(lo + ((new - hi) % span if span > 0 else 0.0))
                return self._t_s
        if new >= end:
            new = end
            self.playing = False
        self._forward(old, new)
        return self._t_s

    def _forward(self, old_s: float, new_s: float) -> None:
        """Apply the messages logged in (old, new]; queue the events passed."""
        old_ns, new_ns = self._ns(old_s), self._ns(new_s)
        self._t_s = new_s
        lo = int(np.searchsorted(self._all_ns, old_ns, side="right"))
        hi = int(np.searchsorted(self._all_ns, new_ns, side="right"))
        if hi > lo:
            latest: dict[int, int] = {}
            for stream, row in zip(
                self._all_stream[lo:hi].tolist(), self._all_row[lo:hi].tolist(), strict=True
            ):
                latest[stream] = row
            for stream, row in latest.items():
                if row > self._rows[stream]:
                    self._rows[stream] = row
                    self._apply(stream, row)
            self._dirty = True
        first, last = bisect_right(self._event_t, old_s), bisect_right(self._event_t, new_s)
        self._pending += self.events[first:last]
        if self._update_liveness(new_ns):
            self._dirty = True

    def _apply(self, index: int, row: int) -> None:
        kind, owner, stream = self._order[index]
        if kind == "crane":
            crane = self.cranes[owner]
            if row < 0:
                crane.bridge_m, crane.trolley_m, crane.hoist_m = self._crane_home[owner]
                crane.moving, crane.stamp_ns, crane.liveness = False, 0, STALE
                return
            bridge, trolley, hoist, moving = stream.values[row].tolist()
            crane.bridge_m, crane.trolley_m, crane.hoist_m = bridge, trolley, hoist
            crane.moving = bool(moving)
            crane.stamp_ns = int(stream.ints[row, 0])
            crane.liveness = REPLAY
            return
        view = self.robots[owner]
        if kind == "joints":
            self._last_ns[index // 3] = stream.log_ns[row] if row >= 0 else -1
            n = len(view.joint_names) if row < 0 else stream.width // 3
            if row < 0:
                view.positions, view.velocities, view.efforts = [0.0] * n, [0.0] * n, [0.0] * n
                view.stamp_ns, view.epoch = 0, 0
                return
            values = stream.values[row]
            view.joint_names = self._names[owner]
            view.positions = values[:n].tolist()
            view.velocities = values[n : 2 * n].tolist()
            view.efforts = values[2 * n :].tolist()
            stamp_ns, epoch = stream.ints[row].tolist()
            view.stamp_ns, view.epoch = stamp_ns, epoch
        elif kind == "base":
            if row < 0:
                view.base_position_m, view.base_orientation_xyzw = self._rest[owner]
                return
            x, y, z, qx, qy, qz, qw = stream.values[row].tolist()
            view.base_position_m, view.base_orientation_xyzw = (x, y, z), (qx, qy, qz, qw)
        else:
            if row < 0:
                view.mode, view.estop, view.protective_stop = "unknown", False, False
                return
            estop, protective = stream.values[row].tolist()
            view.mode = stream.labels[row]
            view.estop, view.protective_stop = bool(estop), bool(protective)

    def _update_liveness(self, t_ns: int, *, force: bool = False) -> bool:
        """REPLAY or STALE per robot at ``t_ns``; True if any changed."""
        last = self._last_ns
        live = (last >= 0) & (t_ns - last <= self._stale_ns)
        changed = np.nonzero(live != self._live)[0] if not force else range(len(live))
        self._live = live
        for i in changed:
            self.robots[self.robot_ids[int(i)]].liveness = REPLAY if live[i] else STALE
        return len(changed) > 0

    def joint_reports(
        self, robot_id: str, t_s: float, gap_s: float
    ) -> tuple[float, NDArray[np.float64], NDArray[np.float64]] | None:
        """A robot's newest joint positions at or before ``t_s`` and the newest ones at least
        ``gap_s`` older: (seconds between them, older, newer); None where either is missing."""
        stream = self._joints[robot_id]
        times, values, n = stream.log_ns, stream.values, stream.width // 3
        row = int(np.searchsorted(times, self._ns(t_s), side="right")) - 1
        if row < 0:
            return None
        old = int(np.searchsorted(times, times[row] - round(gap_s * _NS), side="right")) - 1
        if old < 0:
            return None
        dt_s = int(times[row] - times[old]) / _NS
        return dt_s, values[old, :n].astype(np.float64), values[row, :n].astype(np.float64)

    # -- events ---------------------------------------------------------------------

    def next_event(self, t_s: float) -> ReplayEvent | None:
        """The first event strictly after ``t_s`` (1 ms tolerance), if any."""
        return next((e for e in self.events if e.t_s > t_s + 1e-3), None)

    def previous_event(self, t_s: float) -> ReplayEvent | None:
        """The last event strictly before ``t_s`` (1 ms tolerance), if any."""
        return next((e for e in reversed(self.events) if e.t_s < t_s - 1e-3), None)

    def event(self, event_id: str) -> ReplayEvent | None:
        """The event with this id, if recorded."""
        return next((e for e in self.events if e.id == event_id), None)

    # -- the Source protocol ----------------------------------------------------------

    def poll(self) -> bool:
        """True if the state changed since the last poll (a seek, or playback moved it)."""
        dirty, self._dirty = self._dirty, False
        return dirty

    def new_events(self) -> Iterator[Event]:
        """Events that playback passed since the last call (seeking passes none)."""
        pending, self._pending = self._pending, []
        return iter(
            Event(0, self.events.index(e) + 1, e.stamp_ns, e.kind, e.source, e.detail)
            for e in pending
        )

    def close(self) -> None:
        """Nothing to release: the index is in memory and no socket was ever opened."""
