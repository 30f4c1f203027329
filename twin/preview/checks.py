"""What a preview checks all along, and the reasons a task fails.

:class:`Checks` is fed by the engine at the check rate and keeps the worst values seen (joint
limit fraction, effort fraction, clearance, balance margin) and a time series for the plots. A
condition becomes a :class:`Reason` the first time it happens per (kind, what): a task that
hits a bench for two seconds gets one ``collision`` reason naming ``bench:B1``, not 480.

Judgements (SI units):

* **joint limit** fraction: ``|q - mid| / (range / 2)``, 1 at a limit; fails above the task's
  ``max_joint_limit_fraction``. Joints the plan parks at a limit (straight knees) are left out.
* **effort** fraction: ``|tau| / rating``, low-passed over :data:`EFFORT_FILTER_S` (a solver
  impulse at a foot strike is not a sustained load); fails above ``max_effort_fraction``.
* **collision**: any other body closer than :data:`CONTACT_M` (touching or overlapping);
  **clearance**: closer than ``min_clearance``. The hand at work is exempt against the bench and
  items it works on, and a held item is not "another body"; but it may only touch the bench: a
  push of the working arm on it over :data:`MAX_WORK_CONTACT_N` (normal force, per link) for
  :data:`WORK_CONTACT_GRACE_S` is a **collision** too (a hand driven into the bench it reaches
  over is not "touching"; before this check such a reach passed, pressing 100 N). Items are not
  judged so: a hand grasping or lifting one presses on it as it must.
* **balance**: outside walk steps, the whole-body centre of mass projected on the floor must be
  inside the support polygon (convex hull of the feet's floor contacts); fails when outside for
  longer than :data:`BALANCE_GRACE_S`. Walking runs on a stabilised base, so balance while
  walking is not judged.
* **reach**, **grasp**, **place**, **deadline** reasons are raised by the engine directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import numpy as np
from numpy.typing import NDArray

CONTACT_M: Final = 0.001
PARKED_RAD: Final = 0.15
"""A target this close to a limit is the plan holding the joint there (see :meth:`joints`)..."""
PARKED_TRACK_RAD: Final = 0.05
"""...as long as the joint stays this close to its target."""
EFFORT_FILTER_S: Final = 0.05
BALANCE_GRACE_S: Final = 0.25
MAX_WORK_CONTACT_N: Final = 30.0
"""The most the arm at work may press on the bench it works at (about 3 kg: a hand resting
on it). More is a push the task did not ask for."""
WORK_CONTACT_GRACE_S: Final = 0.1
"""A push over MAX_WORK_CONTACT_N shorter than this (the impulse of touching down) is not one."""
CLEARANCE_HORIZON_M: Final = 1.0
"""Clearance is measured up to this distance (farther counts as this)."""


class Reason(msgspec.Struct, frozen=True):
    """Why a task fails: what kind, in which step, when (s from start), and a line saying it."""

    kind: str
    step: int
    time_s: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (as in the report and the preview record)."""
        return {"kind": self.kind, "step": self.step, "time_s": self.time_s, "detail": self.detail}


@dataclass
class Series:
    """Samples over time for the plots (one row per check)."""

    t_s: list[float] = field(default_factory=list)
    limit_fraction: list[float] = field(default_factory=list)
    effort_fraction: list[float] = field(default_factory=list)
    clearance_m: list[float] = field(default_factory=list)


class Checks:
    """Accumulates the checks of one preview run (see the module docstring)."""

    def __init__(
        self,
        joint_names: list[str],
        lower: NDArray[np.float64],
        upper: NDArray[np.float64],
        effort_limit: NDArray[np.float64],
        *,
        max_effort_fraction: float,
        max_joint_limit_fraction: float,
        min_clearance_m: float,
        check_dt_s: float,
    ) -> None:
        self.joint_names = joint_names
        finite = np.isfinite(lower) & np.isfinite(upper) & (upper > lower)
        self._mid = np.where(finite, (lower + upper) / 2.0, 0.0)
        self._half = np.where(finite, (upper - lower) / 2.0, np.inf)
        self._rating = np.where(
            np.isfinite(effort_limit) & (effort_limit > 0), effort_limit, np.inf
        )
        self.max_effort_fraction = max_effort_fraction
        self.max_joint_limit_fraction = max_joint_limit_fraction
        self.min_clearance_m = min_clearance_m
        self._alpha = min(1.0, check_dt_s / EFFORT_FILTER_S)
        self._effort = np.zeros(len(joint_names))
        self.reasons: list[Reason] = []
        self._raised: set[tuple[str, str]] = set()
        self.worst_limit = 0.0
        self.worst_limit_joint = ""
        self.worst_effort = 0.0
        self.worst_effort_joint = ""
        self.min_clearance = CLEARANCE_HORIZON_M
        self.min_clearance_to = ""
        self.max_work_contact_n = 0.0
        self.max_work_contact_on = ""
        self._pushing_since: dict[tuple[str, str], float] = {}
        self.min_balance_margin_m = math.inf
        self._outside_since: float | None = None
        self.series = Series()

    def raise_once(self, kind: str, what: str, step: int, t_s: float, detail: str) -> None:
        """Record a reason unless one of this kind about ``what`` was recorded already."""
        if (kind, what) in self._raised:
            return
        self._raised.add((kind, what))
        self.reasons.append(Reason(kind, step, round(t_s, 4), detail))

    def joints(
        self,
        t_s: float,
        step: int,
        positions: NDArray[np.float64],
        efforts: NDArray[np.float64],
        targets: NDArray[np.float64],
        judge_effort: bool = True,
    ) -> tuple[float, float]:
        """Joint limit and effort fractions now (worst joint); raises reasons over the limits.
        ``judge_effort`` False: the efforts are left out (the filter keeps its state, no worst
        effort or reason; the effort fraction returned is the filter's, unchanged).

        A joint the plan commands to rest at a limit (a straight knee) and that stays within
        PARKED_TRACK_RAD of that target is not counted for the limit fraction: what counts is a
        joint driven towards a limit it was not sent to, or one that overshoots its target."""
        limit = np.abs(positions - self._mid) / self._half
        parked = (np.abs(np.abs(targets - self._mid) - self._half) <= PARKED_RAD) & (
            np.abs(positions - targets) <= PARKED_TRACK_RAD
        )
        limit = np.where(parked, 0.0, limit)
        if judge_effort:
            self._effort += self._alpha * (np.abs(efforts) - self._effort)
        effort = self._effort / self._rating
        i, k = int(np.argmax(limit)), int(np.argmax(effort))
        lf, ef = float(limit[i]), float(effort[k])
        if lf > self.worst_limit:
            self.worst_limit, self.worst_limit_joint = lf, self.joint_names[i]
        if judge_effort and ef > self.worst_effort:
            self.worst_effort, self.worst_effort_joint = ef, self.joint_names[k]
        if lf > self.max_joint_limit_fraction:
            name = self.joint_names[i]
            self.raise_once(
                "joint_limit", name, step, t_s,
                f"{name} at {lf:.2f} of its half range (limit {self.max_joint_limit_fraction:g})",
            )  # fmt: skip
        if judge_effort and ef > self.max_effort_fraction:
            name = self.joint_names[k]
            self.raise_once(
                "effort", name, step, t_s,
                f"{name} at {ef:.2f} of its rated effort (limit {self.max_effort_fraction:g})",
            )  # fmt: skip
        return lf, ef

    def clearance(self, t_s: float, step: int, nearest: list[tuple[float, str, str]]) -> float:
        """Distances now as (distance m, own link name, other body name); returns the least."""
        least = CLEARANCE_HORIZON_M
        for distance, own, other in nearest:
            least = min(least, distance)
            if distance < self.min_clearance:
                self.min_clearance, self.min_clearance_to = distance, other
            if distance < CONTACT_M:
                self.raise_once(
                    "collision", other, step, t_s,
                    f"{own} hits {other} ({max(0.0, -distance) * 1000:.0f} mm overlap)",
                )  # fmt: skip
            elif distance < self.min_clearance_m:
                self.raise_once(
                    "clearance", other, step, t_s,
                    f"{own} within {distance * 100:.1f} cm of {other} "
                    f"(minimum {self.min_clearance_m * 100:g} cm)",
                )  # fmt: skip
        return least

    def work_contact(self, t_s: float, step: int, pushes: list[tuple[float, str, str]]) -> None:
        """The working arm's pushes now, as (normal force N, own link name, other body name):
        the largest is kept; one over MAX_WORK_CONTACT_N for WORK_CONTACT_GRACE_S fails."""
        pushing: set[tuple[str, str]] = set()
        for force, own, other in pushes:
            if force > self.max_work_contact_n:
                self.max_work_contact_n, self.max_work_contact_on = force, f"{own} on {other}"
            if force <= MAX_WORK_CONTACT_N:
                continue
            pushing.add((own, other))
            since = self._pushing_since.setdefault((own, other), t_s)
            if t_s - since >= WORK_CONTACT_GRACE_S:
                self.raise_once(
                    "collision", other, step, since,
                    f"{own} pushes {other} with {force:.0f} N (the hand at work may touch what "
                    f"it works on, with at most {MAX_WORK_CONTACT_N:g} N)",
                )  # fmt: skip
        for key in set(self._pushing_since) - pushing:
            del self._pushing_since[key]

    def balance(self, t_s: float, step: int, margin_m: float | None) -> None:
        """Centre-of-mass margin inside the support polygon (m; < 0 outside), None: no feet on
        the floor (counts as outside)."""
        margin = -math.inf if margin_m is None else margin_m
        self.min_balance_margin_m = min(self.min_balance_margin_m, margin)
        if margin >= 0.0:
            self._outside_since = None
            return
        if self._outside_since is None:
            self._outside_since = t_s
        elif t_s - self._outside_since >= BALANCE_GRACE_S:
            what = "no foot on the floor" if margin_m is None else f"{-margin * 100:.1f} cm outside"
            self.raise_once(
                "balance", "com", step, self._outside_since,
                f"centre of mass outside the support polygon ({what})",
            )  # fmt: skip

    def sample(self, t_s: float, limit: float, effort: float, clearance: float) -> None:
        """One row of the time series."""
        self.series.t_s.append(round(t_s, 4))
        self.series.limit_fraction.append(limit)
        self.series.effort_fraction.append(effort)
        self.series.clearance_m.append(clearance)


def push_shift_m(
    force_xy_n: NDArray[np.float64], height_m: float, weight_n: float
) -> NDArray[np.float64]:
    """How far (m, floor plane) a horizontal push on the body ``height_m`` above the floor moves
    the centre of pressure from under the centre of mass of a standing body of ``weight_n``:
    its tipping moment over the weight, F*h/(m*g), along the push."""
    shift: NDArray[np.float64] = np.asarray(force_xy_n, dtype=np.float64) * height_m / weight_n
    return shift


def support_margin(points_xy: NDArray[np.float64], com_xy: NDArray[np.float64]) -> float | None:
    """Signed distance (m) from the centre of mass to the edge of the convex hull of the contact
    points: > 0 inside. None without contact points; with one or two points (a line), the hull
    has no inside, so the margin is minus the distance to it."""
    if len(points_xy) == 0:
        return None
    hull = convex_hull(points_xy)
    if len(hull) < 3:
        if len(hull) == 1:
            return -float(np.linalg.norm(com_xy - hull[0]))
        return -_segment_distance(com_xy, hull[0], hull[1])
    margin = math.inf
    for i in range(len(hull)):
        a, b = hull[i], hull[(i + 1) % len(hull)]
        edge = b - a
        normal = np.array([-edge[1], edge[0]]) / max(1e-12, float(np.linalg.norm(edge)))
        margin = min(margin, float(np.dot(com_xy - a, normal)))  # counter-clockwise: left = in
    return margin


def convex_hull(points: NDArray[np.float64]) -> list[NDArray[np.float64]]:
    """Convex hull, counter-clockwise (Andrew's monotone chain)."""
    pts = sorted({(round(float(p[0]), 6), round(float(p[1]), 6)) for p in points})
    if len(pts) <= 2:
        return [np.array(p) for p in pts]

    def cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[float, float]] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return [np.array(p) for p in lower[:-1] + upper[:-1]]


def _segment_distance(
    p: NDArray[np.float64], a: NDArray[np.float64], b: NDArray[np.float64]
) -> float:
    ab = b - a
    w = float(np.clip(np.dot(p - a, ab) / max(1e-12, float(np.dot(ab, ab))), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + w * ab)))
