"""Failure detection: falls, joint limits, efforts, stale telemetry, collisions, divergence.

:class:`Monitors` runs a set of detectors over plain per-robot state (anything shaped like
:class:`twin.live.links.RobotLink`: ``model``, ``joints``, ``base``, ``reported``, ``liveness``),
so the same code runs live (the mirror's links, at the end of a tick) and offline (state
rebuilt from a recording's ``/joints/<robot>`` and ``/base/<robot>`` channels, see
:mod:`twin.failures.offline`).

Every detector has hysteresis: a condition raises ONE :class:`FailureEvent` when it starts,
and is re-armed only after it has been clear (with a stricter threshold where noise could
make it flap) for a hold time. Detectors are time-gated: :meth:`Monitors.check` does its
work at most ``rate_hz`` times a second (20 Hz by default) and the collision detector,
which asks PyBullet for closest points, at most ``collision_hz`` (4 Hz). It asks only for
pairs whose bounding boxes (PyBullet's, enclosing every link's collision shape) overlap: a
pair whose boxes are apart cannot touch, and counts as clear exactly as a pair with no
contact points (a closest-points query costs about 0.7 ms a pair of humanoids; a box, 2 us
a link).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from robots import RobotModel
from sync.codecs import JointSample, codec_for
from sync.streams import Liveness
from twin.failures.divergence import predict_envelope
from twin.failures.events import FailureEvent, GripLike, RobotLike, Severity
from twin.world.world import World

log = logging.getLogger(__name__)

DEFAULT_RATE_HZ: Final = 20.0
DEFAULT_COLLISION_HZ: Final = 4.0
FALL_HEIGHT_FRACTION: Final = 0.5  # base below this share of the standing base height
FALL_TILT_RAD: Final = math.radians(60.0)
RISE_HEIGHT_FRACTION: Final = 0.7  # a fallen robot counts as up again above this ...
RISE_TILT_RAD: Final = math.radians(45.0)  # ... and below this tilt
UPRIGHT_TILT_RAD: Final = math.radians(25.0)
"""A robot tilted at most this much (and its base at least :data:`RISE_HEIGHT_FRACTION` of its
standing height) is in its working posture. Measured in the emulated hall (30 s runs, every
robot): work leans a robot up to 12.6 deg (benches) and 22.9 deg at 0.74 of its height (squats);
every fall was seen at 50 deg or more or below half its height, 0.13 to 0.57 s after its last
pose within these bounds."""
JOINT_LIMIT_MARGIN_RAD: Final = 0.02
EFFORT_OVER_FRACTION: Final = 1.05  # a motor saturating at its rating is normal; 5 % over is not
EFFORT_CLEAR_FRACTION: Final = 0.9
STALE_FAILURE_S: Final = 0.5  # a blip of STALE is shown live; a failure needs this much silence
PENETRATION_M: Final = 0.005  # overlap deeper than this counts as a collision
CLEAR_HOLD_NS: Final = 1_000_000_000  # a condition must stay clear this long to re-arm
DIVERGENCE_RAD: Final = 0.2  # beyond the reachable envelope, any joint
DIVERGENCE_SPEED_FACTOR: Final = 1.5
DIVERGENCE_CLEAR_RAD: Final = 0.1
MAX_PREDICTION_S: Final = 0.25  # predict no further (beyond: a telemetry gap, not motion)
_SILENT: Final = frozenset({Liveness.STALE, Liveness.GONE})
GRIP_GAP_NS: Final = 1_000_000_000
"""Heartbeats (10 Hz) further apart than this: the gripper's story starts afresh."""


@dataclass(frozen=True)
class _Limits:
    """A model's joint limits in wire order."""

    names: tuple[str, ...]  # canonical names
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]
    effort: NDArray[np.float64]
    velocity: NDArray[np.float64]


def _limits(model: RobotModel) -> _Limits:
    codec = codec_for(model)
    joints = [model.joint(name) for name in codec.names]
    return _Limits(
        names=tuple(codec.canonical_names),
        lower=np.array([j.lower for j in joints], dtype=np.float64),
        upper=np.array([j.upper for j in joints], dtype=np.float64),
        effort=np.array([j.effort_limit for j in joints], dtype=np.float64),
        velocity=np.array([j.velocity_limit for j in joints], dtype=np.float64),
    )


def tilt_rad(orientation_xyzw: tuple[float, ...], standing_xyzw: tuple[float, ...]) -> float:
    """Angle between the robot's up axis now and when standing (the model's own frame undone)."""
    x1, y1, z1, w1 = orientation_xyzw
    bx, by, bz, bw = standing_xyzw
    x2, y2, z2, w2 = -bx, -by, -bz, bw  # conjugate of the standing orientation
    x = w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2
    y = w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2
    norm = x1 * x1 + y1 * y1 + z1 * z1 + w1 * w1
    cos_tilt = 1.0 - 2.0 * (x * x + y * y) / max(norm, 1e-12)
    return math.acos(max(-1.0, min(1.0, cos_tilt)))


def stands_upright(robot: RobotLike) -> bool | None:
    """Whether the robot's newest base pose is its working posture (:data:`UPRIGHT_TILT_RAD`,
    :data:`RISE_HEIGHT_FRACTION`); None without a base pose."""
    base = robot.base
    if base is None:
        return None
    model = robot.model
    tilt = tilt_rad(base.orientation_xyzw, model.base_orientation_xyzw)
    standing_m = model.base_height_m
    return tilt <= UPRIGHT_TILT_RAD and base.position_m[2] >= RISE_HEIGHT_FRACTION * standing_m


class _Latch:
    """Hysteresis per condition key: raise once, re-arm after staying clear for a hold time."""

    def __init__(self, hold_ns: int) -> None:
        self.hold_ns = hold_ns
        self._active: dict[tuple[str, ...], int | None] = {}  # key -> clear since (or None)

    def update(self, key: tuple[str, ...], bad: bool, clear: bool, now_ns: int) -> bool:
        """True when ``key`` just became bad (raise an event)."""
        if key not in self._active:
            if bad:
                self._active[key] = None
                return True
            return False
        if bad or not clear:
            self._active[key] = None
            return False
        since = self._active[key]
        if since is None:
            self._active[key] = now_ns
        elif now_ns - since >= self.hold_ns:
            del self._active[key]
        return False

    def active(self, key: tuple[str, ...]) -> bool:
        """Whether an event for ``key`` is outstanding."""
        return key in self._active


class Monitors:
    """The failure detectors of one hall; call :meth:`check` as often as you like."""

    def __init__(
        self,
        *,
        rate_hz: float = DEFAULT_RATE_HZ,
        collision_hz: float = DEFAULT_COLLISION_HZ,
        collisions: bool = True,
        pose_world: bool = False,
    ) -> None:
        """``pose_world``: put each robot's base and joints into the world before looking
        for collisions (offline; live, the mirror's world is posed already)."""
        self.period_ns = int(1e9 / rate_hz)
        self.collision_period_ns = int(1e9 / collision_hz)
        self.collisions = collisions
        self.pose_world = pose_world
        self.count = 0
        self._next_ns: int | None = None
        self._next_collision_ns: int | None = None
        self._latch = _Latch(CLEAR_HOLD_NS)
        self._limits: dict[str, _Limits] = {}
        self._was_heard: set[str] = set()
        self._watch: dict[str, set[int]] = {}  # robot -> joints with a latched condition
        self._previous: dict[str, tuple[int, JointSample]] = {}  # robot -> (check ns, sample)
        self._holding: dict[str, str] = {}  # robot -> the item its gripper last held
        self._beats: dict[str, tuple[GripLike, int]] = {}  # robot -> (newest beat, seen at ns)

    def active(self, robot_id: str, kind: str) -> bool:
        """Whether a ``kind`` failure of the robot is outstanding: raised and not yet clear for
        the hold time (e.g. ``divergence``: its reports still jump beyond the prediction)."""
        return self._latch.active((robot_id, kind))

    def due(self, now_ns: int) -> bool:
        """Whether :meth:`check` would run the detectors now."""
        return self._next_ns is None or now_ns >= self._next_ns

    def check(
        self, now_ns: int, robots: Mapping[str, RobotLike], world: World | None
    ) -> list[FailureEvent]:
        """Run the detectors if due; the failures that began since the last check."""
        if not self.due(now_ns):
            return []
        self._next_ns = now_ns + self.period_ns
        found: list[FailureEvent] = []
        for robot_id, robot in robots.items():
            self._fall(now_ns, robot_id, robot, found)
            self._joints(now_ns, robot_id, robot, found)
            self._stale(now_ns, robot_id, robot, found)
            self._diverge(now_ns, robot_id, robot, found)
            self._grasp(now_ns, robot_id, robot, found)
        collide_due = self._next_collision_ns is None or now_ns >= self._next_collision_ns
        if self.collisions and world is not None and collide_due:
            self._next_collision_ns = now_ns + self.collision_period_ns
            self._collide(now_ns, robots, world, found)
        return found

    def _raise(
        self,
        found: list[FailureEvent],
        now_ns: int,
        robot_id: str,
        kind: str,
        severity: Severity,
        details: str,
        *,
        upright: bool | None = None,
    ) -> None:
        self.count += 1
        event = FailureEvent(
            f"F{self.count:04d}", now_ns, robot_id, kind, severity, details, upright
        )
        log.info("failure %s %s %s: %s", event.id, robot_id, kind, details)
        found.append(event)

    # -- detectors --------------------------------------------------------------

    def _grasp(
        self, now_ns: int, robot_id: str, robot: RobotLike, found: list[FailureEvent]
    ) -> None:
        """A grasped item dropped: the gripper held an item and, still closed, holds nothing.

        Opening the gripper is a release (a place), not a drop; a robot that falls while
        holding something drops it too. After a gap in its heartbeats longer than
        GRIP_GAP_S (a silence, a restart) a robot starts afresh: what it held before the gap
        is not compared with after (a short STALE blip in its joint stream changes nothing).
        The event says whether the robot stood :func:`stands_upright` when the drop was seen."""
        beat = robot.heartbeat
        if beat is None:
            return
        previous = self._beats.get(robot_id)
        if previous is None or previous[0] is not beat:  # a new heartbeat arrived
            if previous is not None and now_ns - previous[1] > GRIP_GAP_NS:
                self._holding.pop(robot_id, None)
            self._beats[robot_id] = (beat, now_ns)
        held = self._holding.get(robot_id, "")
        if held and not beat.holding and beat.grip_closed:
            self._raise(
                found, now_ns, robot_id, "grasp_dropped", "error",
                f"dropped {held}: the gripper is closed but no longer senses it",
                upright=stands_upright(robot),
            )  # fmt: skip
        self._holding[robot_id] = beat.holding

    def _diverge(
        self, now_ns: int, robot_id: str, robot: RobotLike, found: list[FailureEvent]
    ) -> None:
        """The twin's prediction against what the robot reports.

        From the previous report, the twin predicts where each joint can be now: within
        its velocity limit (times DIVERGENCE_SPEED_FACTOR) of where it was, plus
        DIVERGENCE_RAD. A report outside that envelope is a divergence: a jump no motor
        could make (a bad sensor, a restart into another pose, a wrong calibration). A
        constant-velocity prediction was tried first and rejected: heel strikes reverse a
        walking ankle within one 50 ms check and flagged healthy robots."""
        sample = robot.joints
        previous = self._previous.get(robot_id)
        if sample is None:
            return
        self._previous[robot_id] = (now_ns, sample)
        if previous is None or previous[1] is sample:
            return  # nothing new to compare
        then_ns, before = previous
        dt_s = (now_ns - then_ns) / 1e9
        if not 0.0 < dt_s <= MAX_PREDICTION_S:
            return
        model = robot.model
        limits = self._limits.get(model.name)
        if limits is None:
            limits = self._limits[model.name] = _limits(model)
        predicted = predict_envelope(
            before.positions, sample.positions, limits.velocity, dt_s, DIVERGENCE_SPEED_FACTOR
        )
        error = np.abs(sample.positions - predicted)  # how far beyond its speed limit
        worst = int(np.argmax(error))
        key = (robot_id, "divergence")
        if self._latch.update(
            key,
            bool(error[worst] > DIVERGENCE_RAD),
            bool(error.max() < DIVERGENCE_CLEAR_RAD),
            now_ns,
        ):
            name = robot.model.profile.canonical_name(robot.model.profile.joint_names[worst])
            self._raise(
                found, now_ns, robot_id, "divergence", "error",
                f"{name} reported {sample.positions[worst]:.3f} rad, twin predicted at most "
                f"{predicted[worst]:.3f} rad ({error[worst]:.2f} rad beyond its speed limit)",
            )  # fmt: skip

    def _fall(
        self, now_ns: int, robot_id: str, robot: RobotLike, found: list[FailureEvent]
    ) -> None:
        base = robot.base
        if base is None:
            return
        model = robot.model
        height_m = base.position_m[2]
        tilt = tilt_rad(base.orientation_xyzw, model.base_orientation_xyzw)
        standing_m = model.base_height_m
        low = height_m < FALL_HEIGHT_FRACTION * standing_m
        bad = low or tilt > FALL_TILT_RAD
        clear = height_m > RISE_HEIGHT_FRACTION * standing_m and tilt < RISE_TILT_RAD
        if self._latch.update((robot_id, "fall"), bad, clear, now_ns):
            why = "base height" if low else "tilt"
            self._raise(
                found, now_ns, robot_id, "fall", "critical",
                f"fell ({why}): base {height_m:.3f} m (standing {standing_m:.3f} m), "
                f"tilt {math.degrees(tilt):.0f} deg",
            )  # fmt: skip

    def _joints(
        self, now_ns: int, robot_id: str, robot: RobotLike, found: list[FailureEvent]
    ) -> None:
        sample = robot.joints
        if sample is None:
            return
        model = robot.model
        limits = self._limits.get(model.name)
        if limits is None:
            limits = self._limits[model.name] = _limits(model)
        pos = sample.positions
        over = (pos < limits.lower - JOINT_LIMIT_MARGIN_RAD) | (
            pos > limits.upper + JOINT_LIMIT_MARGIN_RAD
        )
        inside = (pos >= limits.lower) & (pos <= limits.upper)
        effort = np.abs(sample.efforts)
        strong = effort > EFFORT_OVER_FRACTION * limits.effort
        weak = effort < EFFORT_CLEAR_FRACTION * limits.effort
        # only joints in trouble now, or latched earlier (their clear timers run), one by one
        trouble = set(np.flatnonzero(over | ~inside | strong | ~weak).tolist())
        watched = self._watch.setdefault(robot_id, set())
        for i in sorted(trouble | watched):
            name = limits.names[i]
            key = (robot_id, "joint_limit", name)
            if self._latch.update(key, bool(over[i]), bool(inside[i]), now_ns):
                low = pos[i] < limits.lower[i]
                limit = limits.lower[i] if low else limits.upper[i]
                self._raise(
                    found, now_ns, robot_id, "joint_limit", "error",
                    f"{name} at {pos[i]:.3f} rad, {'below' if low else 'above'} its limit "
                    f"{limit:.3f} rad",
                )  # fmt: skip
            e_key = (robot_id, "effort", name)
            if self._latch.update(e_key, bool(strong[i]), bool(weak[i]), now_ns):
                self._raise(
                    found, now_ns, robot_id, "effort", "warning",
                    f"{name} effort {sample.efforts[i]:.1f} N*m over its rating "
                    f"{limits.effort[i]:.1f} N*m",
                )  # fmt: skip
            if self._latch.active(key) or self._latch.active(e_key):
                watched.add(i)
            else:
                watched.discard(i)

    def _stale(
        self, now_ns: int, robot_id: str, robot: RobotLike, found: list[FailureEvent]
    ) -> None:
        state = robot.reported
        if state in (Liveness.LIVE, Liveness.LATE):
            self._was_heard.add(robot_id)
        silent = state in _SILENT and robot_id in self._was_heard
        last = robot.liveness.last_rx_ns
        quiet_s = (now_ns - last) / 1e9 if last else math.inf
        bad = silent and not robot.liveness.shutdown and quiet_s >= STALE_FAILURE_S
        if self._latch.update((robot_id, "stale"), bad, not silent, now_ns):
            self._raise(
                found, now_ns, robot_id, "stale", "warning",
                f"telemetry {state}: no joint state for "
                f"{(now_ns - robot.liveness.last_rx_ns) / 1e9:.2f} s"
                if robot.liveness.last_rx_ns and robot.liveness.last_rx_ns <= now_ns
                else f"telemetry {state}",
            )  # fmt: skip
        if state == Liveness.GONE and robot.liveness.shutdown:
            self._was_heard.discard(robot_id)  # an orderly shutdown: nothing to report

    def _collide(
        self,
        now_ns: int,
        robots: Mapping[str, RobotLike],
        world: World,
        found: list[FailureEvent],
    ) -> None:
        ids = [rid for rid in robots if rid in world.robots]
        if self.pose_world:
            pose_world(world, {rid: robots[rid] for rid in ids})
        others = [n for n in world.body_names() if n.startswith(("bench:", "crane:"))]
        bases = {rid: world.base_pose(rid)[0] for rid in ids}
        boxes: dict[str, Box | None] = {}
        for n, a in enumerate(ids):
            targets = [f"robot:{b}" for b in ids[n + 1 :] if _near(robots, a, b, bases)]
            for other in [*targets, *others]:
                if not _may_touch(world, boxes, f"robot:{a}", other):
                    contacts = []  # boxes apart: no contact, exactly as PyBullet would say
                else:
                    contacts = world.contacts(f"robot:{a}", other, margin_m=0.0)
                depth_m = -min((c.distance_m for c in contacts), default=0.0)
                key = (a, "collision", other)
                if self._latch.update(key, depth_m > PENETRATION_M, depth_m <= 0.0, now_ns):
                    self._raise(
                        found, now_ns, a, "collision", "error",
                        f"robot:{a} collides with {other} ({depth_m * 1000:.0f} mm deep)",
                    )  # fmt: skip


Box = tuple[NDArray[np.float64], NDArray[np.float64]]


def _box(world: World, name: str) -> Box | None:
    """The axis-aligned box around every link of a body (PyBullet's own link boxes, which
    enclose each collision shape); None when PyBullet cannot give one (then never skip)."""
    from robots.bullet import pb

    try:
        body, client = world.resolve(name).body, world.client
        links = range(-1, pb.getNumJoints(body, physicsClientId=client))
        corners = np.array([pb.getAABB(body, link, physicsClientId=client) for link in links])
    except Exception:  # a body PyBullet has no box for: check it the slow way
        return None
    if corners.ndim != 3 or not np.isfinite(corners).all():
        return None
    return corners[:, 0].min(axis=0), corners[:, 1].max(axis=0)


def _may_touch(world: World, boxes: dict[str, Box | None], a: str, b: str) -> bool:
    """Whether the boxes of bodies ``a`` and ``b`` overlap (``boxes``: a cache per check)."""
    for name in (a, b):
        if name not in boxes:
            boxes[name] = _box(world, name)
    box_a, box_b = boxes[a], boxes[b]
    if box_a is None or box_b is None:
        return True
    return bool((box_a[0] <= box_b[1]).all() and (box_b[0] <= box_a[1]).all())


def _near(
    robots: Mapping[str, RobotLike],
    a: str,
    b: str,
    bases: Mapping[str, tuple[float, float, float]],
) -> bool:
    """Whether two robots' bases are close enough for their bodies to touch at all."""
    pa, pb_ = bases[a], bases[b]
    reach_m = robots[a].model.height_m + robots[b].model.height_m
    return math.dist(pa, pb_) < reach_m


def pose_world(world: World, robots: Mapping[str, RobotLike]) -> None:
    """Put robots' newest bases and joints into ``world`` (offline collision checks)."""
    from robots.bullet import pb

    for robot_id, robot in robots.items():
        handle = world.robot(robot_id)
        if robot.base is not None:
            pb.resetBasePositionAndOrientation(
                handle.body,
                robot.base.position_m,
                robot.base.orientation_xyzw,
                physicsClientId=world.client,
            )
        sample = robot.joints
        if sample is not None:
            codec = codec_for(robot.model)
            indices = [handle.joint_index[name] for name in codec.names]
            pb.resetJointStatesMultiDof(
                handle.body,
                indices,
                targetValues=[[v] for v in sample.positions.tolist()],
                physicsClientId=world.client,
            )
