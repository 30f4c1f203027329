"""Replay of a twin recording as a viewer source, with a timeline.

:class:`ReplaySource` opens a recording (:func:`twin.record.recording.open_recording`) without
reading its messages: it keeps the file's chunk table and reads, decompresses and keeps
(a few at a time) only the chunks that a seek or playback needs
(:class:`twin.record.replay_index.ChunkStore`), so memory and opening time follow what is
looked at, not the file's size. Seeking finds, per stream (a robot's joint states, base
poses, heartbeats; a crane), its newest message at or before the instant, in the chunk
that holds it, and decodes only that message; playing forward decodes only each stream's
newest message between the previous and the new instant. A robot's joint states are
recorded as blocks of states (:mod:`twin.record.joint_blocks`), each state replayed as
if it were a message of its own at its receive time; a block is decoded once for all its
states (:class:`twin.record.replay_views.JointDecoder`). Values are the recorded ones,
exactly (the canonical messages, decoded as written). A message that does not decode is
one :class:`RecordingError` from the seek or playback step that shows it, after the other
streams are shown (a block's, once for all its states).

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
from collections.abc import Callable, Iterator
from functools import partial
from typing import Final, TypeVar

import msgspec
import numpy as np
from numpy.typing import NDArray

from robots import get_model
from scenes import parse_scene
from scenes.model import Scene
from sync.fanout import CraneView, Event, RobotView
from twin.record.joint_blocks import BlockError
from twin.record.recording import (
    Recording,
    RecordingError,
    no_readable_messages,
    nothing_readable,
)
from twin.record.replay_chunks import chunk_catalog
from twin.record.replay_events import ReplayEvent, event_id
from twin.record.replay_index import CACHE_BYTES, ChunkStore, Key
from twin.record.replay_views import (
    JointDecoder,
    decode_beat,
    decode_crane,
    decode_event,
    decode_pose,
    initial_views,
)
from twin.record.schemas import JointMsg

log = logging.getLogger(__name__)

REPLAY: Final = "REPLAY"
STALE: Final = "STALE"
STALE_PERIODS: Final = 3.0
STALE_FLOOR_S: Final = 0.25
MIN_SPEED: Final = 0.1
MAX_SPEED: Final = 10.0
_NS: Final = 1_000_000_000
_END_NS: Final = (1 << 63) - 1
_Msg = TypeVar("_Msg")


class ReplaySource:
    """A recording as a viewer :class:`viz.sources.Source`, with seek, play, speed, loop."""

    def __init__(
        self,
        recording: Recording,
        scene: Scene | None = None,
        *,
        stale_floor_s: float = STALE_FLOOR_S,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        """``stale_floor_s``: a robot shows STALE only after at least this much silence
        (and three nominal periods): recorded receive times come in bursts, and a 500 Hz
        robot would otherwise flicker STALE between bursts that the live twin took in.
        ``cache_bytes``: what the chunks kept decoded may hold (two are, whatever size)."""
        self.recording = recording
        self._stale_floor_s = stale_floor_s
        self._cache_bytes = cache_bytes
        self.scene = scene if scene is not None else parse_scene(recording.scene_text, "scene.yaml")
        self.robot_ids = [r.id for r in self.scene.robots]
        self.crane_ids = [c.id for c in self.scene.cranes]
        self.robots, self.cranes = initial_views(self.scene, STALE)
        self._rest = {
            r: (v.base_position_m, v.base_orientation_xyzw) for r, v in self.robots.items()
        }
        self._crane_home = {c: (v.bridge_m, v.trolley_m, v.hoist_m) for c, v in self.cranes.items()}
        self.events: list[ReplayEvent] = []
        self._index()
        self._t_s = 0.0
        self._keys: list[Key | None] = [None] * len(self._order)
        self.speed_x = 1.0
        self.playing = False
        self.loop: tuple[float, float] | None = None
        self._dirty = True
        self._pending: list[ReplayEvent] = []
        self.seek(0.0)

    # -- the index ----------------------------------------------------------------

    def _index(self) -> None:
        self._order: list[tuple[str, str]] = []
        for rid in self.robot_ids:
            self._order += [("joints", rid), ("base", rid), ("heartbeat", rid)]
        self._order += [("crane", cid) for cid in self.crane_ids]
        streams = {f"/{kind}/{owner}": i for i, (kind, owner) in enumerate(self._order)}
        events = streams["/events"] = len(self._order)
        self._store = ChunkStore(
            self.recording.path, chunk_catalog(self.recording), streams, self._cache_bytes
        )
        raw_events = [(key[0], self._decode(decode_event, key)) for key in self._store.keys(events)]
        times = [t for t, _ in raw_events]
        times += self._store.extent(range(len(self._order))) or ()
        if not times and nothing_readable(self.recording.catalog):
            raise RecordingError(no_readable_messages(self.recording.damage))
        self.start_ns = min(times, default=0)
        self.end_ns = max(times, default=self.start_ns)
        self.events = sorted(
            (ReplayEvent((t - self.start_ns) / _NS, event_id(e.id, e.kind, e.detail), e.stamp_ns,
                         e.kind, e.source, e.detail) for t, e in raw_events),
            key=lambda e: (e.t_s, e.id),
        )  # fmt: skip
        self._event_t = [e.t_s for e in self.events]
        self._last_ns = [-1] * len(self.robot_ids)  # log time of each one's joint state
        # whole nanoseconds (a log time is one): t - last <= s  <=>  t - last <= floor(s)
        rates = [get_model(r.model).profile.rate_hz for r in self.scene.robots]
        floor_ns = self._stale_floor_s * _NS
        self._stale_ns = np.array(
            [math.floor(max(floor_ns, STALE_PERIODS * _NS / hz)) for hz in rates], dtype=np.int64
        )
        self._live = [False] * len(self.robot_ids)
        self._apply = self._appliers()
        self._joints = [JointDecoder() for _ in self.robot_ids]
        self._live_until = -1  # no robot turns STALE before this (playing forward)
        self._joined = False  # a STALE robot got a joint state since
        log.info(
            "replay index: %d chunks, %d events, %.1f s, %.1f MB",
            len(self._store.refs), len(self.events), self.duration_s, self.index_bytes / 1e6,
        )  # fmt: skip

    def _decode(self, decode: Callable[[memoryview], _Msg], key: Key) -> _Msg:
        try:
            return decode(self._store.data(key))
        except msgspec.DecodeError as exc:
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: Exception) -> RecordingError:
        return RecordingError(f"{self.recording.path}: unreadable message ({exc})")

    @property
    def chunks_read(self) -> int:
        """Chunks of the file read and decompressed so far (opening included)."""
        return self._store.decoded

    @property
    def index_bytes(self) -> int:
        """Bytes the replay holds: the chunk table, the chunks and joint blocks decoded now."""
        return self._store.nbytes + sum(d.nbytes for d in self._joints)

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
        failed: RecordingError | None = None
        for i in range(len(self._order)):
            key = self._store.newest(i, t_ns)
            if key != self._keys[i]:
                error = self._show(i, key)
                failed = failed or error
        self._update_liveness(t_ns, force=True)
        self._dirty = True
        if failed is not None:
            raise failed

    def _show(self, stream: int, key: Key | None) -> RecordingError | None:
        """Show ``key`` as the stream's message; the error if it does not decode (the views
        keep what they showed, and the message counts as shown: said once)."""
        self._keys[stream] = key
        try:
            self._apply[stream](key)
        except RecordingError as exc:
            return exc
        return None

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
        in_blocks = [u[0] for d in self._joints if (u := d.until) is not None and u[1] > old_ns]
        latest = self._store.latest_in(old_ns, new_ns, in_blocks)
        failed: RecordingError | None = None
        if latest:
            keys, streams = self._keys, len(self._order)
            for stream, key in latest.items():
                if stream < streams:  # not an event
                    now = keys[stream]
                    if now is None or key > now:
                        error = self._show(stream, key)
                        failed = failed or error
            self._dirty = True
        first, last = bisect_right(self._event_t, old_s), bisect_right(self._event_t, new_s)
        if last > first:
            self._pending += self.events[first:last]
        if self._update_liveness(new_ns):
            self._dirty = True
        if failed is not None:
            raise failed

    def _appliers(self) -> list[Callable[[Key | None], None]]:
        """Per stream, what applies one of its messages (None: none yet) to the views."""
        out: list[Callable[[Key | None], None]] = []
        for robot, rid in enumerate(self.robot_ids):
            view = self.robots[rid]
            out += [
                partial(self._apply_joints, robot, view),
                partial(self._apply_base, rid, view),
                partial(self._apply_beat, view),
            ]
        out += [partial(self._apply_crane, cid, self.cranes[cid]) for cid in self.crane_ids]
        return out

    def _apply_joints(self, robot: int, view: RobotView, key: Key | None) -> None:
        self._last_ns[robot] = key[0] if key is not None else -1
        if not self._live[robot]:
            self._joined = True
        if key is None:
            n = len(view.joint_names)
            view.positions, view.velocities, view.efforts = [0.0] * n, [0.0] * n, [0.0] * n
            view.stamp_ns, view.epoch = 0, 0
            self._joints[robot].until = None
            return
        chunk, start, end = self._store.locate(key)
        try:
            js = self._joints[robot].state(key, chunk, start, end)
        except (msgspec.DecodeError, BlockError) as exc:
            raise self._unreadable(exc) from None
        if js is None:  # a block found unreadable before: nothing to show
            return
        if isinstance(js, JointMsg):
            view.joint_names = js.name
        view.positions, view.velocities, view.efforts = js.position, js.velocity, js.effort
        view.stamp_ns, view.epoch = js.stamp_ns, js.epoch

    def _apply_base(self, robot_id: str, view: RobotView, key: Key | None) -> None:
        if key is None:
            view.base_position_m, view.base_orientation_xyzw = self._rest[robot_id]
            return
        pose = self._decode(decode_pose, key).pose
        p, q = pose.position, pose.orientation
        view.base_position_m, view.base_orientation_xyzw = (p.x, p.y, p.z), (q.x, q.y, q.z, q.w)

    def _apply_beat(self, view: RobotView, key: Key | None) -> None:
        if key is None:
            view.mode, view.estop, view.protective_stop = "unknown", False, False
            return
        beat = self._decode(decode_beat, key)
        view.mode, view.estop, view.protective_stop = beat.mode, beat.estop, beat.protective_stop

    def _apply_crane(self, crane_id: str, crane: CraneView, key: Key | None) -> None:
        if key is None:
            crane.bridge_m, crane.trolley_m, crane.hoist_m = self._crane_home[crane_id]
            crane.moving, crane.stamp_ns, crane.liveness = False, 0, STALE
            return
        c = self._decode(decode_crane, key)
        crane.bridge_m, crane.trolley_m, crane.hoist_m = c.bridge_m, c.trolley_m, c.hoist_m
        crane.moving, crane.stamp_ns, crane.liveness = c.moving, c.stamp_ns, REPLAY

    def _update_liveness(self, t_ns: int, *, force: bool = False) -> bool:
        """REPLAY or STALE per robot at ``t_ns``; True if any changed. Played forward
        (not ``force``), nothing can change before the first robot's silence runs out
        unless a STALE robot got a joint state, so only then is it worked out."""
        if not force and not self._joined and t_ns <= self._live_until:
            return False
        last = np.array(self._last_ns, dtype=np.int64)
        live = (last >= 0) & (t_ns - last <= self._stale_ns)
        old = np.array(self._live, dtype=bool)
        changed = np.nonzero(live != old)[0].tolist() if not force else range(len(live))
        self._live = live.tolist()
        deadlines = (last + self._stale_ns)[live]
        self._live_until = int(deadlines.min()) if len(deadlines) else _END_NS
        self._joined = False
        for i in changed:
            self.robots[self.robot_ids[i]].liveness = REPLAY if self._live[i] else STALE
        return len(changed) > 0

    def joint_reports(
        self, robot_id: str, t_s: float, gap_s: float
    ) -> tuple[float, NDArray[np.float64], NDArray[np.float64]] | None:
        """A robot's newest joint positions at or before ``t_s`` and the newest ones at least
        ``gap_s`` older: (seconds between them, older, newer); None where either is missing."""
        robot = self.robot_ids.index(robot_id)
        new = self._store.newest(3 * robot, self._ns(t_s))
        if new is None:
            return None
        old = self._store.newest(3 * robot, new[0] - round(gap_s * _NS))
        if old is None:
            return None
        decoder = self._joints[robot]
        try:
            older = decoder.positions(old, self._store.data(old))
            newer = decoder.positions(new, self._store.data(new))
        except (msgspec.DecodeError, BlockError) as exc:
            raise self._unreadable(exc) from None
        if older is None or newer is None:  # a block found unreadable before
            return None
        n = min(len(older), len(newer))
        dt_s = (new[0] - old[0]) / _NS
        return dt_s, np.array(older[:n]), np.array(newer[:n])

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
        """Drop the decoded chunks (the file is opened per chunk read; no socket ever)."""
        self._store.clear()
