"""A dispatched run of a task found in a recording, and the robot's joints while it ran.

The comparison of a preview with reality (:mod:`twin.preview.against`) needs to know when the
robot ran the task. A recording of ``twin live --keys --record`` holds the dispatch gate's
events on ``/events``: ``dispatch`` events (``sent`` with the task's name and the SHA-256 of its
file, the robot's ``answer`` events ``accept`` and later ``done`` or ``failed``) and a ``plan``
event with the plan that was sent. :func:`find_run` picks the latest finished dispatch of the
task's exact bytes to the robot (failing that, the latest of a task with the same name, said
so). A recording without any dispatch to the robot (made without the gate) falls back to the
robot's heartbeats: the span whose ``step`` is ``dispatched`` (what the emulated gateways report
while they follow a plan) is the run, from its first to its last such heartbeat.

:func:`read_joints` reads the robot's canonical ``/joints/<robot>`` messages (SI units) in a
time window. Times are the twin's receive clock (the recording's log time), the clock the
events are stamped with.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from twin.plan.model import TaskPlan
from twin.record.joint_blocks import recorded_states
from twin.record.recording import Recording
from twin.record.schemas import HeartbeatMsg, JointMsg

log = logging.getLogger(__name__)

EVENTS_TOPIC: Final = "/events"
DISPATCHED_STEP: Final = "dispatched"
"""The heartbeat ``step`` of a robot following a dispatched plan (the emulated gateways')."""

_HEARTBEAT_DECODER: Final = msgspec.json.Decoder(HeartbeatMsg)
_PLAN_DECODER: Final = msgspec.json.Decoder(dict[str, Any])
_FINISHED: Final = ("done", "failed")


class AgainstError(ValueError):
    """A recording that cannot be compared with a preview (one line: which file and why)."""


@dataclass(frozen=True)
class DispatchedRun:
    """One run of a task on a robot, as the recording tells it (times: receive clock, ns)."""

    robot: str
    task_name: str
    source: str
    """``dispatch events`` or ``heartbeat`` (how the run was found)."""
    start_ns: int
    """The robot's accept (or the send, when no accept was recorded); the first ``dispatched``
    heartbeat for a run found by heartbeats."""
    done_ns: int
    """The robot's ``done`` (or ``failed``) answer; the last ``dispatched`` heartbeat."""
    outcome: str
    dispatch_id: str = ""
    sha256: str = ""
    sent_ns: int | None = None
    plan: TaskPlan | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Telemetry:
    """A robot's recorded joints: canonical names, receive times (ns), positions (rad or m) and
    efforts (N*m or N), one row per message."""

    names: tuple[str, ...]
    t_ns: NDArray[np.int64]
    positions: NDArray[np.float64]
    efforts: NDArray[np.float64]


@dataclass
class _Dispatch:
    dispatch_id: str
    robot: str = ""
    task: str = ""
    sha256: str = ""
    sent_ns: int | None = None
    accepted_ns: int | None = None
    finished_ns: int | None = None
    outcome: str = ""
    plan: TaskPlan | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _dispatches(recording: Recording) -> dict[str, _Dispatch]:
    """Every dispatch the recording's events tell of, by id."""
    found: dict[str, _Dispatch] = {}
    for message in recording.iter_messages([EVENTS_TOPIC]):
        try:
            event = json.loads(message.data)
            kind, detail = event["kind"], event["detail"]
            if kind not in ("dispatch", "plan"):
                continue
            body = _PLAN_DECODER.decode(detail)
        except (ValueError, KeyError, TypeError, msgspec.DecodeError):
            continue  # not an event of the gate's shape
        dispatch_id = body.get("id")
        if not isinstance(dispatch_id, str):
            continue
        one = found.setdefault(dispatch_id, _Dispatch(dispatch_id))
        stamp = message.log_time_ns
        if kind == "plan":
            try:
                one.plan = msgspec.convert(body.get("plan"), TaskPlan)
            except msgspec.ValidationError:
                log.warning("%s: the plan of %s does not decode", recording.path, dispatch_id)
            continue
        what = body.get("what")
        if what == "sent":
            one.robot, one.task = str(body.get("robot", "")), str(body.get("task", ""))
            one.sha256, one.sent_ns = str(body.get("sha256", "")), stamp
        elif what == "answer":
            status = body.get("status")
            if status == "accept":
                one.accepted_ns = stamp
            elif status in ("done", "failed", "reject"):
                one.finished_ns, one.outcome = stamp, str(status)
        elif what in ("timeout", "given_up") and one.finished_ns is None:
            one.extra[what] = stamp
    return found


def find_run(
    recording: Recording,
    robot: str,
    task_name: str,
    digest: str,
    duration_s: float,
    dispatch_id: str | None = None,
) -> DispatchedRun:
    """The latest finished run of the task on ``robot`` (see the module docstring), or the run
    of ``dispatch_id`` when given; :class:`AgainstError` when there is none. ``duration_s``: the
    plan's, to tell a heartbeat span long enough to be this task."""
    where = recording.path
    mine = [d for d in _dispatches(recording).values() if d.robot == robot and d.sent_ns]
    if dispatch_id is not None:
        mine = [d for d in mine if d.dispatch_id == dispatch_id]
        if not mine:
            raise AgainstError(f"{where}: no dispatch {dispatch_id} to {robot} (yet)")
    if not mine:
        return _run_from_heartbeats(recording, robot, task_name, duration_s)
    exact = [d for d in mine if d.sha256 == digest]
    named = [d for d in mine if d.task == task_name]
    candidates: list[_Dispatch] = exact
    notes: tuple[str, ...] = ()
    if not exact and named:
        candidates = named
        notes = (
            f"no dispatch of these exact task bytes (sha256 {digest[:12]}...) in the recording; "
            f"compared with a dispatch of a task also named {task_name!r}",
        )
    if not candidates:
        ran = sorted({d.task for d in mine})
        raise AgainstError(
            f"{where}: task {task_name!r} never ran on {robot} in this recording "
            f"(dispatched to it: {', '.join(ran)})"
        )
    finished = [d for d in candidates if d.outcome in _FINISHED and d.finished_ns is not None]
    if not finished:
        last = max(candidates, key=lambda d: d.sent_ns or 0)
        state = "rejected" if last.outcome == "reject" else "never finished"
        raise AgainstError(
            f"{where}: dispatch {last.dispatch_id} of {task_name!r} to {robot} {state} in this "
            "recording; nothing to compare"
        )
    best = max(finished, key=lambda d: d.finished_ns or 0)
    assert best.finished_ns is not None and best.sent_ns is not None
    start = best.accepted_ns if best.accepted_ns is not None else best.sent_ns
    return DispatchedRun(
        robot=robot,
        task_name=best.task,
        source="dispatch events",
        start_ns=start,
        done_ns=best.finished_ns,
        outcome=best.outcome,
        dispatch_id=best.dispatch_id,
        sha256=best.sha256,
        sent_ns=best.sent_ns,
        plan=best.plan,
        notes=notes,
    )


def _run_from_heartbeats(
    recording: Recording, robot: str, task_name: str, duration_s: float
) -> DispatchedRun:
    """The last span of ``dispatched`` heartbeats at least half the plan long."""
    spans: list[tuple[int, int]] = []
    start: int | None = None
    last: int | None = None
    beats = 0
    for message in recording.iter_messages([f"/heartbeat/{robot}"]):
        try:
            beat = _HEARTBEAT_DECODER.decode(message.data)
        except msgspec.DecodeError:
            continue
        beats += 1
        t = message.log_time_ns
        if beat.step == DISPATCHED_STEP:
            start = t if start is None else start
            last = t
        elif start is not None and last is not None:
            spans.append((start, last))
            start = last = None
    if start is not None and last is not None:
        spans.append((start, last))
    long_enough = [s for s in spans if (s[1] - s[0]) / 1e9 >= 0.5 * duration_s]
    if not long_enough:
        why = (
            f"no heartbeats of {robot}"
            if beats == 0
            else f"no span of '{DISPATCHED_STEP}' steps in {robot}'s heartbeats as long as half "
            f"the plan ({duration_s:.2f} s)"
        )
        raise AgainstError(
            f"{recording.path}: task {task_name!r} never ran on {robot} in this recording "
            f"(no dispatch of it to {robot}, and {why})"
        )
    first, end = long_enough[-1]
    note = (
        f"found by {robot}'s heartbeats (step '{DISPATCHED_STEP}'): the recording has no "
        "dispatch events, so which task ran is not known from it"
    )
    return DispatchedRun(robot, task_name, "heartbeat", first, end, "done", notes=(note,))


def _states(
    recording: Recording, robot: str, from_ns: int, to_ns: int
) -> Iterator[tuple[int, JointMsg]]:
    """The robot's joint states received in ``[from_ns, to_ns]`` (a message that does not
    decode is left out)."""
    for message in recording.iter_messages([f"/joints/{robot}"]):
        try:
            for t, joints in recorded_states(message):
                if from_ns <= t <= to_ns:
                    yield t, joints
        except (msgspec.DecodeError, ValueError):
            continue


def read_joints(recording: Recording, robot: str, from_ns: int, to_ns: int) -> Telemetry:
    """The robot's joint messages received in ``[from_ns, to_ns]``; :class:`AgainstError` when
    there are none."""
    names: tuple[str, ...] | None = None
    times: list[int] = []
    positions: list[list[float]] = []
    efforts: list[list[float]] = []
    for t, joints in _states(recording, robot, from_ns, to_ns):
        if names is None:
            names = tuple(joints.name)
        if tuple(joints.name) != names or len(joints.position) != len(names):
            continue  # a message of another layout (a robot swapped mid-recording)
        times.append(t)
        positions.append(joints.position)
        efforts.append(joints.effort if len(joints.effort) == len(names) else [0.0] * len(names))
    if names is None or len(times) < 2:
        raise AgainstError(
            f"{recording.path}: no joint states of {robot} while the task ran "
            f"({(to_ns - from_ns) / 1e9:.2f} s from the robot's accept to its done)"
        )
    order = np.argsort(np.array(times, dtype=np.int64), kind="stable")
    return Telemetry(
        names,
        np.array(times, dtype=np.int64)[order],
        np.array(positions, dtype=np.float64)[order],
        np.array(efforts, dtype=np.float64)[order],
    )
