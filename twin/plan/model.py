"""A task plan: what a robot should do over time, compiled once from a task file.

The preview engine and the hall emulator execute the same plan (each with its own physics),
and the dispatch gate sends it to a robot's gateway, so it is plain data: keyframes of
canonical joint targets (rad), the base's path on the floor and the grip, linearly
interpolated between keyframes.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence

import msgspec
import numpy as np
from numpy.typing import NDArray


class PlanFrame(msgspec.Struct, frozen=True):
    """One keyframe: at ``t_s`` (from the task's start) the robot should be here.

    ``joints_rad`` holds canonical joint names (see :mod:`robots.canonical`) the frame sets;
    a joint it does not name keeps the previous frame's target (the first frame's missing joints
    are the robot's rest pose). ``base_xy_yaw`` is the pelvis' floor position (m) and heading
    (rad, about +Z from +X) in the hall frame. ``grip`` is 0 open .. 1 closed. ``step`` is the
    index of the task step this frame belongs to. ``pelvis_pitch_rad`` (added after the first
    contract, default 0) is the pelvis' forward lean (rad, > 0 leans forward), with which a short
    robot reaches over a bench; an executor that ignores it keeps the pelvis upright.
    """

    t_s: float
    step: int
    base_xy_yaw: tuple[float, float, float]
    joints_rad: dict[str, float]
    grip: float = 0.0
    pelvis_pitch_rad: float = 0.0


class PlanSample(msgspec.Struct, frozen=True):
    """The plan interpolated at one instant (every joint named by any frame is present)."""

    t_s: float
    step: int
    base_xy_yaw: tuple[float, float, float]
    joints_rad: dict[str, float]
    grip: float
    pelvis_pitch_rad: float = 0.0


class TaskPlan(msgspec.Struct, frozen=True):
    """A robot's task as keyframes, sorted by time; ``duration_s`` is the last frame's time."""

    task_name: str
    robot: str
    frames: list[PlanFrame]

    @property
    def duration_s(self) -> float:
        return self.frames[-1].t_s if self.frames else 0.0

    def at(self, t_s: float, rest_rad: Mapping[str, float] | None = None) -> PlanSample:
        """The plan at ``t_s``, clamped to its first and last frames (for many instants, a
        :class:`PlanTable` does the per-plan work once)."""
        return PlanTable(self, rest_rad).at(t_s)


class PlanTable:
    """A plan ready for sampling at many instants: each frame's full joint targets (earlier
    values carried forward) and the frame times, computed once."""

    def __init__(self, plan: TaskPlan, rest_rad: Mapping[str, float] | None = None) -> None:
        if not plan.frames:
            raise ValueError(f"plan of {plan.task_name!r} has no frames")
        self.plan = plan
        self.frames = plan.frames
        self.times = [frame.t_s for frame in plan.frames]
        self.filled = _filled(plan.frames, rest_rad or {})

    def at(self, t_s: float) -> PlanSample:
        """The plan at ``t_s``, clamped to its first and last frames."""
        i, w = self._locate(t_s)
        filled = self.filled
        if w is None:
            return self._sample(t_s, i, None, dict(filled[i]))
        joints = {
            name: (1.0 - w) * value + w * filled[i + 1].get(name, value)
            for name, value in filled[i].items()
        }
        return self._sample(t_s, i, w, joints)

    def joint_matrix(self, names: Sequence[str]) -> NDArray[np.float64]:
        """Every frame's full joint targets as rows in ``names`` order (0 where a frame has
        no value), for :meth:`at_array`."""
        return np.array([[f.get(name, 0.0) for name in names] for f in self.filled])

    def at_array(
        self, t_s: float, matrix: NDArray[np.float64]
    ) -> tuple[PlanSample, NDArray[np.float64]]:
        """:meth:`at` with the joints as an array (``matrix`` from :meth:`joint_matrix`: the
        same values as ``at(t_s).joints_rad`` in its order, 0 where absent) and the sample's
        ``joints_rad`` left empty: for a loop that samples every tick."""
        i, w = self._locate(t_s)
        if w is None:
            return self._sample(t_s, i, None, {}), matrix[i].copy()
        return self._sample(t_s, i, w, {}), (1.0 - w) * matrix[i] + w * matrix[i + 1]

    def _locate(self, t_s: float) -> tuple[int, float | None]:
        """The frame at or before ``t_s`` and the weight of the next one (None: clamped to
        the frame itself, before the first, on it, or past the last)."""
        i = max(bisect.bisect_right(self.times, t_s) - 1, 0)
        a = self.frames[i]
        if i >= len(self.frames) - 1 or t_s <= a.t_s:
            return i, None
        span = self.frames[i + 1].t_s - a.t_s
        return i, 0.0 if span <= 0 else (t_s - a.t_s) / span

    def _sample(self, t_s: float, i: int, w: float | None, joints: dict[str, float]) -> PlanSample:
        """The sample between frames ``i`` and ``i + 1`` at weight ``w`` (None: frame ``i``)."""
        a = self.frames[i]
        if w is None:
            return PlanSample(t_s, a.step, a.base_xy_yaw, joints, a.grip, a.pelvis_pitch_rad)
        b = self.frames[i + 1]
        base = (
            (1.0 - w) * a.base_xy_yaw[0] + w * b.base_xy_yaw[0],
            (1.0 - w) * a.base_xy_yaw[1] + w * b.base_xy_yaw[1],
            a.base_xy_yaw[2] + w * _wrap(b.base_xy_yaw[2] - a.base_xy_yaw[2]),
        )
        return PlanSample(
            t_s,
            a.step,
            base,
            joints,
            (1.0 - w) * a.grip + w * b.grip,
            (1.0 - w) * a.pelvis_pitch_rad + w * b.pelvis_pitch_rad,
        )


def _wrap(angle_rad: float) -> float:
    """An angle difference into (-pi, pi]."""
    return math.atan2(math.sin(angle_rad), math.cos(angle_rad))


def _filled(frames: list[PlanFrame], rest_rad: Mapping[str, float]) -> list[dict[str, float]]:
    """Each frame's full joint targets (carrying earlier values forward)."""
    current = dict(rest_rad)
    out: list[dict[str, float]] = []
    for frame in frames:
        current = {**current, **frame.joints_rad}
        out.append(current)
    return out
