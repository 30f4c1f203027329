"""Pacing a balanced plan: moves outside walks no faster than a standing robot's joints follow.

The compiler paces each move as it emits it (:meth:`twin.preview.builder._Builder._paced_s`),
but whole-body balancing (:mod:`twin.preview.balance`) then moves the legs, torso and lean of
the keyframes, so a balanced move can be faster than paced (up to 1.4 times, measured on the
torque-wrench example). :func:`repace` stretches each such move to its paced duration and
shifts everything after it; :class:`TimeMap` carries the stretch over to what the compiler
timed against the plan (hand targets, grasps, wrench loads, step spans, notes).

Times are seconds from the task's start; walks are left as they are (their gait has its own
timing).
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, TypeVar

import msgspec

from twin.plan.model import PlanFrame

log = logging.getLogger(__name__)

SMOOTHSTEP_PEAK: Final = 1.5
"""A smoothstep move's peak speed over its mean."""


class TimeMap:
    """A monotone piecewise-linear map from the plan's old times to the paced ones."""

    def __init__(self, old_s: Sequence[float], new_s: Sequence[float]) -> None:
        self.old = list(old_s)
        self.new = list(new_s)

    def __call__(self, t_s: float) -> float:
        old, new = self.old, self.new
        if not old:
            return t_s
        i = bisect.bisect_right(old, t_s) - 1
        if i < 0:
            return t_s + (new[0] - old[0])
        if i >= len(old) - 1:
            return t_s + (new[-1] - old[-1])
        span = old[i + 1] - old[i]
        w = 0.0 if span <= 0.0 else (t_s - old[i]) / span
        return new[i] + w * (new[i + 1] - new[i])

    @property
    def stretched_s(self) -> float:
        """How much longer the plan became."""
        return (self.new[-1] - self.old[-1]) if self.old else 0.0


def repace(
    frames: Sequence[PlanFrame],
    walks: Iterable[int],
    rest_rad: Mapping[str, float],
    slow_rad_s: float,
    fast_rad_s: float,
    slow_parts: Sequence[str],
) -> tuple[list[PlanFrame], TimeMap]:
    """The frames with each move between two frames outside walks given at least the time
    that keeps every joint's peak speed within ``slow_rad_s`` (joints named with one of
    ``slow_parts``, and the pelvis' lean) or ``fast_rad_s`` (the others), and the map from old
    times to new."""
    walk_steps = set(walks)
    out: list[PlanFrame] = []
    old_times: list[float] = []
    new_times: list[float] = []
    before = dict(rest_rad)
    shift = 0.0
    previous: PlanFrame | None = None
    for frame in frames:
        joints = {**before, **frame.joints_rad}
        if (
            previous is not None
            and frame.step not in walk_steps
            and (previous.step not in walk_steps)
        ):
            span = frame.t_s - previous.t_s
            need = abs(frame.pelvis_pitch_rad - previous.pelvis_pitch_rad) / slow_rad_s
            for name, value in joints.items():
                limit = slow_rad_s if any(p in name for p in slow_parts) else fast_rad_s
                need = max(need, abs(value - before.get(name, value)) / limit)
            need *= SMOOTHSTEP_PEAK
            if need > span + 1e-9:
                shift += need - span
        old_times.append(frame.t_s)
        new_times.append(frame.t_s + shift)
        out.append(msgspec.structs.replace(frame, t_s=round(frame.t_s + shift, 6)))
        before = joints
        previous = frame
    if shift > 0.0:
        log.debug("balanced plan paced: %.2f s longer", shift)
    return out, TimeMap(old_times, new_times)


T = TypeVar("T")


def retimed(items: Iterable[T], fields: Sequence[str], time_map: TimeMap) -> tuple[T, ...]:
    """Frozen dataclasses with their time ``fields`` (seconds; None kept) mapped."""
    out = []
    for item in items:
        changes = {}
        for name in fields:
            value = getattr(item, name)
            if value is not None:
                changes[name] = time_map(value)
        out.append(dataclasses.replace(item, **changes))  # type: ignore[type-var]
    return tuple(out)
