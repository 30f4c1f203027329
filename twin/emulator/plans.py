"""Where things go in the emulated hall: lanes for walking robots, waypoint loops for cranes.

Both plans are pure functions of time (no physics, no randomness), so the emulator's motion is
deterministic and a test can check a whole loop without stepping a world.

* :func:`plan_walk` finds a straight lane from a robot's station, preferably along the station
  heading, that keeps clear of the floor edge, benches, the hub, other robots' stations and lanes
  planned before it. :class:`WalkPath` walks it back and forth at a steady speed with trapezoidal
  speed ramps and a turn on the spot at each end.
* :class:`CranePlan` moves a crane's bridge, trolley and hook through a loop of waypoints inside
  their travel, every axis at most at a fraction of its rated speed, pausing at each waypoint.

Hall frame, SI units: metres, seconds, radians; yaw about +Z from +X.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from scenes.model import Crane, Scene

WALK_SPEED_M_S: Final = 0.5
WALK_LANE_M: Final = 4.0
MIN_LANE_M: Final = 1.5
TURN_S: Final = 2.0
RAMP_S: Final = 0.6
FLOOR_MARGIN_M: Final = 0.8
BENCH_CLEARANCE_M: Final = 0.7
ROBOT_CLEARANCE_M: Final = 1.2
_MARCH_STEP_M: Final = 0.05

CRANE_SPEED_FRACTION: Final = 0.85
CRANE_PAUSE_S: Final = 3.0
SAFE_LOAD_CLEARANCE_M: Final = 2.6
"""Lowest height of the bottom of a crane's load while it travels over the hall (above heads)."""
_HOOK_AND_LOAD_GAP_M: Final = 0.4  # hook body height (twin/world/crane.py), hook point to load

Point = tuple[float, float]


def _smoothstep(u: float) -> float:
    u = min(1.0, max(0.0, u))
    return u * u * (3.0 - 2.0 * u)


@dataclass(frozen=True)
class WalkState:
    """Where a walking robot's pelvis is at one instant of its lane."""

    x_m: float
    y_m: float
    yaw_rad: float
    speed_fraction: float
    """Current walking speed over the cruise speed (0 while turning, 1 cruising)."""


@dataclass(frozen=True)
class WalkPath:
    """A lane from ``start`` along ``heading_rad`` of ``length_m``, walked out and back forever."""

    start: Point
    heading_rad: float
    length_m: float
    speed_m_s: float = WALK_SPEED_M_S
    turn_s: float = TURN_S
    ramp_s: float = RAMP_S

    @property
    def cruise_m_s(self) -> float:
        """Top speed on this lane: the walking speed, less on a lane too short to reach it."""
        return min(self.speed_m_s, self.length_m / self.ramp_s)

    @property
    def leg_s(self) -> float:
        """Duration of one straight walk (out or back), ramps included."""
        cruise = self.cruise_m_s
        return (self.length_m / cruise if cruise > 0.0 else 0.0) + self.ramp_s

    @property
    def period_s(self) -> float:
        """Duration of a whole out-turn-back-turn loop."""
        return 2.0 * (self.leg_s + self.turn_s)

    def _distance(self, u_s: float) -> tuple[float, float]:
        """Distance walked and speed fraction ``u_s`` seconds into one straight leg."""
        ramp, total, v = self.ramp_s, self.leg_s, self.cruise_m_s
        top = v / self.speed_m_s
        if u_s < ramp:
            return 0.5 * v / ramp * u_s * u_s, top * u_s / ramp
        if u_s < total - ramp:
            return 0.5 * v * ramp + v * (u_s - ramp), top
        left = max(0.0, total - u_s)
        return self.length_m - 0.5 * v / ramp * left * left, top * left / ramp

    def at(self, t_s: float) -> WalkState:
        """Pelvis position, heading and speed fraction at ``t_s`` (0: at the start, setting off)."""
        u = t_s % self.period_s
        leg, turn = self.leg_s, self.turn_s
        cx, cy = math.cos(self.heading_rad), math.sin(self.heading_rad)
        x0, y0 = self.start
        if u < leg:  # out
            d, frac = self._distance(u)
            return WalkState(x0 + cx * d, y0 + cy * d, self.heading_rad, frac)
        x1, y1 = x0 + cx * self.length_m, y0 + cy * self.length_m
        if u < leg + turn:  # turn at the far end
            yaw = self.heading_rad + math.pi * _smoothstep((u - leg) / turn)
            return WalkState(x1, y1, yaw, 0.0)
        if u < 2.0 * leg + turn:  # back
            d, frac = self._distance(u - leg - turn)
            return WalkState(x1 - cx * d, y1 - cy * d, self.heading_rad + math.pi, frac)
        yaw = self.heading_rad + math.pi * (1.0 + _smoothstep((u - 2.0 * leg - turn) / turn))
        return WalkState(x0, y0, yaw, 0.0)


@dataclass(frozen=True)
class _Segment:
    a: Point
    b: Point


def _segment_distance(p: Point, seg: _Segment) -> float:
    ax, ay = seg.a
    bx, by = seg.b
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    u = 0.0 if length2 == 0.0 else ((p[0] - ax) * dx + (p[1] - ay) * dy) / length2
    u = min(1.0, max(0.0, u))
    return math.hypot(p[0] - ax - u * dx, p[1] - ay - u * dy)


def inside_rectangle(
    p: Point, centre: Point, size: tuple[float, float], yaw_rad: float, margin_m: float = 0.0
) -> bool:
    """Whether ``p`` lies within a yawed rectangle (footprint) grown by ``margin_m``."""
    dx, dy = p[0] - centre[0], p[1] - centre[1]
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    lx, ly = c * dx + s * dy, -s * dx + c * dy
    return abs(lx) <= size[0] / 2.0 + margin_m and abs(ly) <= size[1] / 2.0 + margin_m


def _blocked(scene: Scene, p: Point, others: Sequence[Point], lanes: Sequence[_Segment]) -> bool:
    sx, sy = scene.floor.size
    if not (FLOOR_MARGIN_M <= p[0] <= sx - FLOOR_MARGIN_M):
        return True
    if not (FLOOR_MARGIN_M <= p[1] <= sy - FLOOR_MARGIN_M):
        return True
    for bench in scene.benches:
        centre = (bench.pose.xyz[0], bench.pose.xyz[1])
        if inside_rectangle(p, centre, bench.size, bench.pose.yaw_rad, BENCH_CLEARANCE_M):
            return True
    hub = scene.hub
    hub_xy = (hub.pose.xyz[0], hub.pose.xyz[1])
    if inside_rectangle(p, hub_xy, hub.size[:2], hub.pose.yaw_rad, BENCH_CLEARANCE_M):
        return True
    if any(math.hypot(p[0] - o[0], p[1] - o[1]) < ROBOT_CLEARANCE_M for o in others):
        return True
    return any(_segment_distance(p, lane) < ROBOT_CLEARANCE_M for lane in lanes)


def _free_length(
    scene: Scene,
    start: Point,
    heading_rad: float,
    others: Sequence[Point],
    lanes: Sequence[_Segment],
) -> float:
    cx, cy = math.cos(heading_rad), math.sin(heading_rad)
    steps = int(WALK_LANE_M / _MARCH_STEP_M)
    for i in range(1, steps + 1):
        d = i * _MARCH_STEP_M
        if _blocked(scene, (start[0] + cx * d, start[1] + cy * d), others, lanes):
            return (i - 1) * _MARCH_STEP_M
    return WALK_LANE_M


def plan_walks(scene: Scene) -> dict[str, WalkPath]:
    """Lanes for every walking robot of ``scene``, planned in scene order so lanes don't cross.

    Each lane starts at the robot's station and runs up to :data:`WALK_LANE_M` along the station
    heading, or failing :data:`MIN_LANE_M` of free floor that way, to the right, left or back; the
    longest is taken when none is long enough. A robot boxed in gets a zero-length lane (it
    steps on the spot and turns).
    """
    lanes: list[_Segment] = []
    paths: dict[str, WalkPath] = {}
    for robot in scene.robots:
        if robot.task != "walking":
            continue
        station = scene.station(robot.station)
        start = (station.pose.xyz[0], station.pose.xyz[1])
        others = [
            (scene.station(r.station).pose.xyz[0], scene.station(r.station).pose.xyz[1])
            for r in scene.robots
            if r.id != robot.id
        ]
        best = (0.0, station.pose.yaw_rad)
        for turn in (0.0, -math.pi / 2.0, math.pi / 2.0, math.pi):
            heading = station.pose.yaw_rad + turn
            length = _free_length(scene, start, heading, others, lanes)
            if length > best[0]:
                best = (length, heading)
            if length >= MIN_LANE_M:
                break
        length, heading = best
        path = WalkPath(start, heading, length)
        end = (start[0] + math.cos(heading) * length, start[1] + math.sin(heading) * length)
        lanes.append(_Segment(start, end))
        paths[robot.id] = path
    return paths


# ---------------------------------------------------------------------------------- cranes


@dataclass(frozen=True)
class CraneState:
    """Planned crane axes at one instant: hall positions (m) and velocities (m/s)."""

    position_m: tuple[float, float, float]
    velocity_m_s: tuple[float, float, float]


class CranePlan:
    """A crane's loop: from home to the first waypoint, then round the waypoints forever.

    Waypoints lie at a quarter and three quarters of the bridge and trolley travel; between them
    the hook is high, and at each one it dips (never so low that the load's bottom comes below
    :data:`SAFE_LOAD_CLEARANCE_M` when the travel allows). Every move is synchronised over the
    three axes with a cosine speed profile whose peak is at most :data:`CRANE_SPEED_FRACTION` of
    each axis's rated speed; the crane then pauses :data:`CRANE_PAUSE_S` at the waypoint.
    """

    def __init__(self, crane: Crane) -> None:
        self.crane = crane
        axes = (crane.bridge, crane.trolley, crane.hoist)
        self.speed_limits_m_s = tuple(a.speed * CRANE_SPEED_FRACTION for a in axes)
        (b0, b1), (t0, t1), (h0, h1) = (a.travel for a in axes)
        load_height = crane.load.size[2] if crane.load is not None else 0.0
        safe = SAFE_LOAD_CLEARANCE_M + _HOOK_AND_LOAD_GAP_M + load_height
        high = max(h0, h1 - 0.5 * min(1.0, h1 - h0))
        low = min(high, max(h0, safe, high - 2.0))
        points: list[tuple[float, float, float]] = []
        for fb, ft in ((0.25, 0.3), (0.75, 0.3), (0.75, 0.7), (0.25, 0.7)):
            b, t = b0 + fb * (b1 - b0), t0 + ft * (t1 - t0)
            points += [(b, t, high), (b, t, low), (b, t, high)]
        home = crane.home
        start = (home.bridge, home.trolley, home.hoist)
        self._lead = self._moves([start, points[0]])
        self._loop = self._moves([*points, points[0]])
        self.lead_s = sum(d for _, _, d in self._lead)
        self.loop_s = sum(d for _, _, d in self._loop)
        self.waypoints = tuple(points)

    def _moves(
        self, points: Sequence[tuple[float, float, float]]
    ) -> list[tuple[tuple[float, float, float], tuple[float, float, float], float]]:
        moves: list[tuple[tuple[float, float, float], tuple[float, float, float], float]] = []
        for a, b in itertools.pairwise(points):
            # cosine profile: peak speed = pi/2 * distance / duration
            duration = max(
                (math.pi / 2.0) * abs(bi - ai) / v
                for ai, bi, v in zip(a, b, self.speed_limits_m_s, strict=True)
            )
            if duration > 0.0:
                moves.append((a, b, duration))
            moves.append((b, b, CRANE_PAUSE_S))
        return moves

    def at(self, t_s: float) -> CraneState:
        """Planned positions and velocities ``t_s`` seconds after the start (at home)."""
        moves = self._lead
        u = max(0.0, t_s)
        if u >= self.lead_s:
            moves, u = self._loop, (u - self.lead_s) % self.loop_s
        for a, b, duration in moves:
            if u <= duration:
                w = u / duration
                s = 0.5 * (1.0 - math.cos(math.pi * w))
                ds = 0.5 * math.pi * math.sin(math.pi * w) / duration
                pos = tuple(ai + (bi - ai) * s for ai, bi in zip(a, b, strict=True))
                vel = tuple((bi - ai) * ds for ai, bi in zip(a, b, strict=True))
                return CraneState((pos[0], pos[1], pos[2]), (vel[0], vel[1], vel[2]))
            u -= duration
        last = moves[-1][1]
        return CraneState(last, (0.0, 0.0, 0.0))
