"""Predicted against actual: a preview's figures beside a dispatched run of the same task.

``twin preview TASK --against REC.mcap`` runs the preview with a :class:`PredictionObserver`
(the previewed robot's canonical joint positions and efforts at its telemetry rate), finds the
run of the task in the recording (:mod:`twin.preview.dispatched`) and :func:`compare` sets the
two side by side:

* **alignment**: the plan's end in the recording is the robot's done (its gateway answers at the
  plan's end, within its poll period); the plan's start is where the recorded joints best match
  the predicted ones with the plan stretched evenly between the two (least squares over the
  joints the plan commands), searched from 3 plan durations to half a plan duration before the
  done (never before the accept), on a grid of 20 ms or more, then 2 ms. A robot first moves to
  the plan's first frame: that lead-in is the time between its accept and the plan's start. An
  emulated hall that falls behind real time runs the plan slower: ``time_scale`` > 1.
* **cycle time**: predicted, the preview's; actual, from the plan's start to the robot's done.
* **step durations**: predicted, the compiled plan's step spans; actual, between step
  boundaries each located by a local fit (±1 s of the plan around the boundary, searched ±0.5 s
  around where the whole-run fit puts it). A boundary where the predicted joints hardly move
  (< 0.02 rad) cannot be located so and stays where the whole-run fit puts it (``plan``).
* **peak effort** per joint: the largest mean of ``|effort|`` over the samples in any 0.1 s
  window ``(t - 0.1 s, t]`` lying within the run (the preview run from 0.1 s on, its settling
  included; the recording from the plan's start to the done): robust to one-sample solver
  spikes and to telemetry rates.
* **trajectory deviation** per joint: RMS and largest ``|actual - predicted|`` over the plan,
  the recorded joints interpolated at the predicted samples' instants mapped to the recording
  piecewise linearly through the steps' actual starts and the done (:func:`time_map`): a robot
  (or an emulated hall falling behind real time) that is slow in one step is compared pose for
  pose, and its timing shows in the step durations.
* **minimum clearance**: the preview's; not measured in the recording (:data:`CLEARANCE_WHY`).

Errors are ``actual - predicted``; percentages are of the predicted value (none for a joint whose
predicted peak effort is under :data:`MIN_EFFORT_NM`). Units SI: s, rad (m for a prismatic
joint), N*m (N).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from robots import RobotModel
from robots.bullet import pb
from twin.preview.compiled import CompiledTask
from twin.preview.dispatched import AgainstError, DispatchedRun, Telemetry
from twin.preview.hall import PreviewHall
from twin.preview.result import PreviewResult

log = logging.getLogger(__name__)

EFFORT_WINDOW_S: Final = 0.1
EFFORT_FROM_S: Final = 0.1
"""Predicted peaks leave out the preview's first instants: the robot is set down at the plan's
first frame and its motors take the load (a spike no real start has)."""
FIT_DT_S: Final = 0.02
FINE_DT_S: Final = 0.002
BOUNDARY_HALF_S: Final = 1.0
BOUNDARY_SEARCH_S: Final = 0.5
BOUNDARY_DT_S: Final = 0.01
MIN_MOTION_RAD: Final = 0.02
MIN_EFFORT_NM: Final = 1.0
_SAME_S: Final = 1e-6  # instants closer than this are the same instant
CLEARANCE_WHY: Final = (
    "a recording holds the robots' joints and bases but not where loose items are (the live "
    "twin does not track them), and the preview's clearance leaves out what the hand at work "
    "may touch and what it holds; so it is not measured from the recording"
)

FloatArray = NDArray[np.float64]
Observer = Callable[[float, PreviewHall], None]


@dataclass(frozen=True)
class Prediction:
    """The previewed robot's joints over the preview run: canonical names, times (s from the
    plan's start), positions and efforts (one row per sample)."""

    names: tuple[str, ...]
    t_s: FloatArray
    positions: FloatArray
    efforts: FloatArray


class PredictionObserver:
    """An engine observer keeping the previewed robot's joint positions and efforts, in the
    order of its telemetry profile, under their canonical names, at the robot's telemetry rate
    (the instants :class:`twin.preview.report.PreviewRecorder` writes to ``preview.mcap``)."""

    def __init__(self, model: RobotModel) -> None:
        profile = model.profile
        self._urdf_names = tuple(profile.joint_names)
        self.names = tuple(profile.canonical_name(n) for n in self._urdf_names)
        self._period_ns = round(1e9 / profile.rate_hz)
        self._next_ns = 0
        self._indices: list[int] | None = None
        self._t: list[float] = []
        self._rows: list[list[tuple[float, float]]] = []

    def __call__(self, t_s: float, hall: PreviewHall) -> None:
        t_ns = round(t_s * 1e9)
        if t_ns < self._next_ns:
            return
        self._next_ns = t_ns + self._period_ns
        if self._indices is None:
            self._indices = [hall.joint_index[n] for n in self._urdf_names]
        states = pb.getJointStates(hall.body, self._indices, physicsClientId=hall.client)
        self._t.append(t_s)
        self._rows.append([(s[0], s[3]) for s in states])

    def prediction(self) -> Prediction:
        """What was observed (AgainstError when the run had no step)."""
        if not self._t:
            raise AgainstError("the preview ran no step: nothing predicted")
        rows = np.array(self._rows, dtype=np.float64)
        return Prediction(self.names, np.array(self._t), rows[:, :, 0], rows[:, :, 1])


def tee(*observers: Observer | None) -> Observer:
    """One observer calling each of ``observers`` (None ones left out)."""
    present = [o for o in observers if o is not None]

    def observe(t_s: float, hall: PreviewHall) -> None:
        for observer in present:
            observer(t_s, hall)

    return observe


def _sample(t_src: FloatArray, x_src: FloatArray, t: FloatArray) -> FloatArray:
    """``x_src`` (rows at ``t_src``) linearly interpolated at ``t`` (clamped at the ends)."""
    return np.column_stack([np.interp(t, t_src, x_src[:, j]) for j in range(x_src.shape[1])])


def _costs(
    tel_t: FloatArray, tel_x: FloatArray, target: FloatArray, tp: FloatArray,
    starts: FloatArray, end_s: float,
) -> FloatArray:  # fmt: skip
    """Mean squared difference of the recorded joints against ``target`` (the prediction at the
    plan instants ``tp``) for each candidate start, the plan stretched to end at ``end_s``."""
    duration = float(tp[-1]) if tp[-1] > 0.0 else 1.0
    scale = (end_s - starts) / duration
    when = (starts[:, None] + scale[:, None] * tp[None, :]).ravel()
    total = np.zeros(len(starts))
    for j in range(target.shape[1]):
        at = np.interp(when, tel_t, tel_x[:, j]).reshape(len(starts), len(tp))
        total += ((at - target[None, :, j]) ** 2).mean(axis=1)
    return np.asarray(total / target.shape[1])


def _fit_start(
    tel_t: FloatArray, tel_x: FloatArray, pred_t: FloatArray, pred_x: FloatArray,
    duration_s: float, end_s: float,
) -> tuple[float, float]:  # fmt: skip
    """(plan start in s from the run's start, RMS of the fit): the plan stretched from a start
    to ``end_s``, the start searched from ``max(0, end - 3 x duration)`` to ``end - duration/2``."""
    grid = max(FIT_DT_S, duration_s / 1000.0)
    tp = np.linspace(0.0, duration_s, max(2, round(duration_s / grid) + 1))
    target = _sample(pred_t, pred_x, tp)
    lo, hi = max(0.0, end_s - 3.0 * duration_s), max(0.0, end_s - 0.5 * duration_s)
    step = max(FIT_DT_S, (hi - lo) / 400.0)
    starts = np.arange(lo, hi + 1e-9, step, dtype=np.float64)
    coarse = float(starts[int(np.argmin(_costs(tel_t, tel_x, target, tp, starts, end_s)))])
    fine = np.arange(
        max(lo, coarse - step), min(hi, coarse + step) + 1e-9, FINE_DT_S, dtype=np.float64
    )
    if len(fine) == 0:
        fine = np.array([coarse], dtype=np.float64)
    costs = _costs(tel_t, tel_x, target, tp, fine, end_s)
    best = int(np.argmin(costs))
    return float(fine[best]), float(np.sqrt(max(0.0, float(costs[best]))))


def _boundaries(
    compiled: CompiledTask, start_s: float, end_s: float,
    tel_t: FloatArray, tel_x: FloatArray, pred_t: FloatArray, pred_x: FloatArray,
) -> tuple[list[float], list[str]]:  # fmt: skip
    """Actual start of each step (s from the run's start) and how each was located."""
    spans = compiled.steps
    scale = (end_s - start_s) / compiled.plan.duration_s
    bounds, how = [start_s], ["start"]
    deltas = np.arange(-BOUNDARY_SEARCH_S, BOUNDARY_SEARCH_S + 1e-9, BOUNDARY_DT_S)
    for before, span in itertools.pairwise(spans):
        s = span.start_s
        half = min(BOUNDARY_HALF_S, (s - before.start_s) / 2.0, (span.end_s - s) / 2.0)
        at, located = start_s + scale * s, "plan"
        if half > BOUNDARY_DT_S:
            w = np.arange(s - half, s + half + 1e-9, BOUNDARY_DT_S, dtype=np.float64)
            target = _sample(pred_t, pred_x, w)
            if float(np.ptp(target, axis=0).max()) >= MIN_MOTION_RAD:
                when = start_s + scale * w
                costs = [
                    float(np.mean((_sample(tel_t, tel_x, when + d) - target) ** 2)) for d in deltas
                ]
                at, located = start_s + scale * s + float(deltas[int(np.argmin(costs))]), "fit"
        bounds.append(min(end_s, max(bounds[-1], at)))
        how.append(located)
    return bounds, how


def time_map(
    plan_starts_s: list[float], duration_s: float, actual_s: list[float], plan_t_s: FloatArray
) -> FloatArray:
    """Plan instants mapped to the recording: piecewise linear through each step's start (plan
    and actual) and the end (the plan's duration; the done). ``actual_s``: each step's actual
    start then the end; with no steps, the start and the end. Zero-length steps are skipped."""
    plan = [*plan_starts_s, duration_s] if plan_starts_s else [0.0, duration_s]
    knots_plan, knots_actual = [plan[0]], [actual_s[0]]
    for p, a in zip(plan[1:], actual_s[1:], strict=True):
        if p > knots_plan[-1]:
            knots_plan.append(p)
            knots_actual.append(a)
    return np.asarray(np.interp(plan_t_s, knots_plan, knots_actual), dtype=np.float64)


def _peaks(t_s: FloatArray, values: FloatArray, lo_s: float, hi_s: float) -> FloatArray:
    """Per column, the largest mean of ``|value|`` over the samples in a window
    ``(t - EFFORT_WINDOW_S, t]`` within ``[lo_s, hi_s]`` (the mean of all when the range is
    shorter than a window). Instants are compared within :data:`_SAME_S`: a preview samples at
    multiples of its physics step, so a window's edge often falls exactly on a sample."""
    inside = (t_s >= lo_s - _SAME_S) & (t_s <= hi_s + _SAME_S)
    t, v = t_s[inside], np.abs(values[inside])
    if len(t) == 0:
        return np.full(values.shape[1], np.nan)
    sums = np.vstack([np.zeros(v.shape[1]), np.cumsum(v, axis=0)])
    first = np.searchsorted(t, t - EFFORT_WINDOW_S + _SAME_S, side="right")
    full = t - EFFORT_WINDOW_S >= lo_s - _SAME_S
    if not full.any():
        return np.asarray(v.mean(axis=0))
    i = np.nonzero(full)[0]
    means = (sums[i + 1] - sums[first[i]]) / (i + 1 - first[i])[:, None]
    return np.asarray(means.max(axis=0))


def _r(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def _pct(actual: float, predicted: float, floor: float = 0.0) -> float | None:
    if abs(predicted) <= floor or predicted == 0.0:
        return None
    return round(100.0 * (actual - predicted) / predicted, 2)


def compare(
    *,
    prediction: Prediction,
    result: PreviewResult,
    compiled: CompiledTask,
    run: DispatchedRun,
    telemetry: Telemetry,
) -> dict[str, Any]:
    """The comparison as JSON-ready data (see the module docstring); AgainstError when the
    recording and the preview share no joint or the plan is empty."""
    duration = compiled.plan.duration_s
    if duration <= 0.0:
        raise AgainstError(f"the plan of {result.task!r} is empty: nothing to compare")
    common = [n for n in prediction.names if n in telemetry.names]
    if not common:
        raise AgainstError(f"{run.robot}'s recorded joints and the preview's share no joint name")
    commanded = {name for frame in compiled.plan.frames for name in frame.joints_rad}
    fit_names = [n for n in common if n in commanded] or common
    pi = [prediction.names.index(n) for n in common]
    ai = [telemetry.names.index(n) for n in common]
    fi = [common.index(n) for n in fit_names]
    pred_t, pred_x = prediction.t_s, prediction.positions[:, pi]
    tel_t = (telemetry.t_ns - run.start_ns).astype(np.float64) / 1e9
    tel_x = telemetry.positions[:, ai]
    span = (run.done_ns - run.start_ns) / 1e9
    start, fit_rms = _fit_start(tel_t, tel_x[:, fi], pred_t, pred_x[:, fi], duration, span)
    scale = (span - start) / duration
    bounds, located = _boundaries(compiled, start, span, tel_t, tel_x[:, fi], pred_t, pred_x[:, fi])
    actual_steps = np.diff([*bounds, span]).tolist() if compiled.steps else []
    predicted_steps = [s.end_s - s.start_s for s in compiled.steps]
    # trajectories over the plan, at the predicted samples' instants
    over = (pred_t >= 0.0) & (pred_t <= duration)
    when = time_map([s.start_s for s in compiled.steps], duration, [*bounds, span], pred_t[over])
    deviation = _sample(tel_t, tel_x, when) - pred_x[over]
    rms = np.sqrt(np.mean(deviation**2, axis=0))
    worst = np.max(np.abs(deviation), axis=0)
    # efforts
    predicted_peak = _peaks(pred_t, prediction.efforts[:, pi], EFFORT_FROM_S, float(pred_t[-1]))
    actual_peak = _peaks(tel_t, telemetry.efforts[:, ai], start, span)
    pct = {
        n: _pct(float(actual_peak[k]), float(predicted_peak[k]), MIN_EFFORT_NM)
        for k, n in enumerate(common)
    }
    rated = [n for n in common if pct[n] is not None]
    worst_joint = max(rated, key=lambda n: abs(pct[n] or 0.0)) if rated else None
    cycle_actual = span - start
    k_worst = int(np.argmax(worst))
    return {
        "task": result.task,
        "robot": run.robot,
        "run": {
            "source": run.source,
            "dispatch_id": run.dispatch_id,
            "task_sha256": run.sha256,
            "outcome": run.outcome,
            "sent_ns": run.sent_ns,
            "start_ns": run.start_ns,
            "done_ns": run.done_ns,
            "plan_start_ns": run.start_ns + round(start * 1e9),
            "lead_in_s": _r(start),
            "plan_matches_preview": None if run.plan is None else run.plan == compiled.plan,
            "notes": list(run.notes),
        },
        "alignment": {
            "joints": fit_names,
            "fit_rms_rad": _r(fit_rms),
            "time_scale": _r(scale),
        },
        "cycle_time_s": {
            "predicted": _r(result.cycle_time_s),
            "actual": _r(cycle_actual),
            "error": _r(cycle_actual - result.cycle_time_s),
        },
        "cycle_time_error_pct": _pct(cycle_actual, result.cycle_time_s),
        "steps": [
            {"index": s.index, "kind": s.kind, "label": s.label, "boundary": how}
            for s, how in zip(compiled.steps, located, strict=True)
        ],
        "step_durations_s": {
            "predicted": [_r(x) for x in predicted_steps],
            "actual": [_r(x) for x in actual_steps],
            "error": [_r(a - p) for a, p in zip(actual_steps, predicted_steps, strict=True)],
        },
        "effort_window_s": EFFORT_WINDOW_S,
        "peak_effort_nm": {
            "predicted": {n: _r(predicted_peak[k], 3) for k, n in enumerate(common)},
            "actual": {n: _r(actual_peak[k], 3) for k, n in enumerate(common)},
            "error": {n: _r(actual_peak[k] - predicted_peak[k], 3) for k, n in enumerate(common)},
        },
        "peak_effort_error_pct": pct,
        "worst_peak_effort": None
        if worst_joint is None
        else {
            "joint": worst_joint,
            "predicted": _r(predicted_peak[common.index(worst_joint)], 3),
            "actual": _r(actual_peak[common.index(worst_joint)], 3),
            "error_pct": pct[worst_joint],
        },
        "trajectory_rms_rad": {n: _r(rms[k]) for k, n in enumerate(common)},
        "trajectory_max_rad": {n: _r(worst[k]) for k, n in enumerate(common)},
        "trajectory": {
            "rms_rad": _r(np.sqrt(np.mean(deviation**2))),
            "max_rad": _r(worst[k_worst]),
            "max_joint": common[k_worst],
            "compared_s": _r(duration),
        },
        "min_clearance_m": {
            "predicted": _r(result.min_clearance_m),
            "predicted_to": result.min_clearance_to,
            "actual": None,
            "error": None,
            "measured": False,
            "why": CLEARANCE_WHY,
        },
    }
