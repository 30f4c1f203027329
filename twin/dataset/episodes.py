"""Cutting a robot's recording into episodes, and labelling each with how it went.

An episode is one task cycle of one robot:

* where a heartbeat's ``task`` or ``cycle`` changes, one episode ends and the next begins (a
  gateway that counts no cycles gives one episode per task run; heartbeats come at ~10 Hz, so
  a boundary is placed to within 0.1 s);
* a dispatched plan is an episode of its own, from the gateway's ``accept`` to its ``done`` or
  ``failed`` (or the gate's timeout); the task loop's episode around it is cut there;
* a gap in the joint states (longer than :func:`gap_ns`) ends an episode: frames are never
  interpolated across seconds of silence;
* the recording's start and end cut the first and last episode short: those are marked
  ``complete = False``.

Labels come from the failure detectors: an episode that holds one of the robot's failure
events is a ``failure`` (with the events' kinds, the ids of the incidents those events belong
to, wherever each incident started, and the lessons the twin drew from them: a fall that
joined an incident opened by earlier joint limits still names it); one with no failure event
in which the robot was not running all along (lying after a fall, stopped) is ``fault``; the
rest are ``success``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

import msgspec
import numpy as np

from twin.dataset.source import Arrays, Event
from twin.failures.events import FailureEvent
from twin.failures.incidents import Incident
from twin.plan.model import TaskPlan

log = logging.getLogger(__name__)

MIN_GAP_S: Final = 0.25
GAP_INTERVALS: Final = 5
"""A silence longer than this many of the robot's own intervals (and at least MIN_GAP_S)."""
_END_STATUS: Final = frozenset({"done", "failed", "reject"})


@dataclass
class Episode:
    """One task cycle of one robot, and what happened in it."""

    robot_id: str
    start_ns: int
    end_ns: int
    task: str
    source: str  # "loop" (the station task) or "dispatch" (a dispatched plan)
    task_key: str = ""  # the heartbeat's task (a scene task kind) or the dispatched task's name
    cycle: int = 0
    complete: bool = True
    dispatch_id: str = ""
    plan: TaskPlan | None = None
    plan_start_ns: int = 0
    outcome: str = "success"  # success, failure, fault
    failures: list[str] = field(default_factory=list)  # event kinds, in time order
    incidents: list[str] = field(default_factory=list)
    lessons: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.outcome == "success"


@dataclass(frozen=True)
class Dispatch:
    """A dispatched plan as the recording tells it."""

    dispatch_id: str
    robot_id: str
    task: str
    start_ns: int
    end_ns: int | None
    plan: TaskPlan | None


def gap_ns(series: Arrays) -> int:
    """The silence that ends an episode: GAP_INTERVALS intervals, at least MIN_GAP_S."""
    if len(series.joint_t_ns) < 2:
        return int(MIN_GAP_S * 1e9)
    interval = float(np.median(np.diff(series.joint_t_ns)))
    return int(max(MIN_GAP_S * 1e9, GAP_INTERVALS * interval))


def dispatches(events: Iterable[tuple[int, Event]]) -> list[Dispatch]:
    """Every dispatched plan a robot accepted, from the recorded dispatch and plan events."""
    plans: dict[str, TaskPlan] = {}
    tasks: dict[str, str] = {}
    starts: dict[str, tuple[str, int]] = {}
    ends: dict[str, int] = {}
    for _, event in events:
        if event.kind == "plan":
            try:
                body = msgspec.json.decode(event.detail, type=_PlanEvent)
            except msgspec.DecodeError as exc:
                log.warning("a recorded plan does not decode (%s); its actions are observed", exc)
                continue
            plans[body.id] = body.plan
        elif event.kind == "dispatch":
            try:
                row = json.loads(event.detail)
            except ValueError:
                continue
            what, dispatch_id = row.get("what"), str(row.get("id", ""))
            if what == "sent":
                tasks[dispatch_id] = str(row.get("task", ""))
            elif what == "answer" and row.get("status") == "accept":
                starts[dispatch_id] = (event.source, event.stamp_ns)
            elif what in ("timeout", "given_up") or (
                what == "answer" and row.get("status") in _END_STATUS
            ):
                ends.setdefault(dispatch_id, event.stamp_ns)
    return [
        Dispatch(d, robot, tasks.get(d, "dispatched task"), start, ends.get(d), plans.get(d))
        for d, (robot, start) in sorted(starts.items(), key=lambda kv: kv[1][1])
    ]


class _PlanEvent(msgspec.Struct):
    id: str
    plan: TaskPlan


def task_text(task: str, station: str) -> str:
    """An episode's task text: the task's words, and where ("torque wrench at station S1")."""
    words = task.replace("_", " ") if task else "unnamed task"
    return f"{words} at station {station}" if station else words


def cut(series: Arrays, station: str, robot_dispatches: Sequence[Dispatch]) -> list[Episode]:
    """A robot's episodes in time order (see the module docstring); ``station``: the robot's
    station in the recording's scene ("" when it has none), for the task text."""
    t = series.joint_t_ns
    if len(t) < 2:
        return []
    first, last = int(t[0]), int(t[-1])
    # loop boundaries: where (task, cycle) changes
    pieces: list[Episode] = []
    beats = series.beats
    if beats:
        key = (beats[0].task, beats[0].cycle)
        start, complete_start = first, False
        for when, beat in zip(series.beat_t_ns.tolist(), beats, strict=True):
            if (beat.task, beat.cycle) != key:
                if when > start:
                    pieces.append(_loop(series, start, when, key, station, complete_start))
                key, start, complete_start = (beat.task, beat.cycle), max(when, first), True
        pieces.append(_loop(series, start, last, key, station, complete_start))
        pieces[-1].complete = False
    else:
        pieces.append(_loop(series, first, last, ("", 0), station, False))
        pieces[-1].complete = False
    # dispatched plans take their window out of the loop
    for dispatch in robot_dispatches:
        end = dispatch.end_ns if dispatch.end_ns is not None else last
        pieces = [p for piece in pieces for p in _without(piece, dispatch.start_ns, end)]
        pieces.append(
            Episode(
                series.robot_id, max(dispatch.start_ns, first), min(end, last),
                f"{dispatch.task} (dispatched plan)", "dispatch", dispatch.task,
                complete=dispatch.end_ns is not None, dispatch_id=dispatch.dispatch_id,
                plan=dispatch.plan, plan_start_ns=dispatch.start_ns,
            )
        )  # fmt: skip
    pieces.sort(key=lambda e: e.start_ns)
    # silences split episodes
    gaps = _gaps(t, gap_ns(series))
    out: list[Episode] = []
    for piece in pieces:
        out.extend(_split(piece, gaps))
    return [e for e in out if e.end_ns > e.start_ns]


def _loop(
    series: Arrays,
    start: int,
    end: int,
    key: tuple[str, int],
    station: str,
    complete: bool,
) -> Episode:
    task, cycle = key
    return Episode(
        series.robot_id, start, end, task_text(task, station), "loop", task, cycle, complete
    )


def _without(piece: Episode, start: int, end: int) -> list[Episode]:
    """``piece`` with [start, end] taken out (0, 1 or 2 pieces, cut ends incomplete)."""
    if end <= piece.start_ns or start >= piece.end_ns:
        return [piece]
    out = []
    if start > piece.start_ns:
        out.append(_replace(piece, piece.start_ns, start, False))
    if end < piece.end_ns:
        out.append(_replace(piece, end, piece.end_ns, False))
    return out


def _replace(piece: Episode, start: int, end: int, complete: bool) -> Episode:
    return Episode(
        piece.robot_id, start, end, piece.task, piece.source, piece.task_key, piece.cycle,
        complete, piece.dispatch_id, piece.plan, piece.plan_start_ns,
    )  # fmt: skip


def _gaps(t: np.ndarray, limit_ns: int) -> list[tuple[int, int]]:
    d = np.diff(t)
    at = np.nonzero(d > limit_ns)[0]
    return [(int(t[i]), int(t[i + 1])) for i in at]


def _split(piece: Episode, gaps: list[tuple[int, int]]) -> list[Episode]:
    out = [piece]
    for a, b in gaps:
        last = out[-1]
        if a >= last.start_ns and b <= last.end_ns:
            out[-1] = _replace(last, last.start_ns, a, False)
            out.append(_replace(last, b, last.end_ns, False))
    return out


def label(
    episodes: list[Episode],
    failures: Sequence[FailureEvent],
    incidents: Sequence[Incident],
    lessons: Iterable[tuple[int, Event]],
    running: dict[int, bool],
) -> None:
    """Set each episode's outcome, failure kinds, incidents and lessons (in place).

    ``running`` says, per episode index, whether the robot was running in every frame.
    """
    lesson_of: dict[str, list[str]] = {}
    for _, event in lessons:
        try:
            detail = json.loads(event.detail)
        except ValueError:
            continue
        incident, lesson = str(detail.get("incident", "")), str(detail.get("lesson", ""))
        if incident and lesson and lesson not in lesson_of.get(incident, []):
            lesson_of.setdefault(incident, []).append(lesson)
    for index, episode in enumerate(episodes):
        mine = [
            f for f in failures
            if f.robot_id == episode.robot_id and episode.start_ns <= f.stamp_ns <= episode.end_ns
        ]  # fmt: skip
        ids = {f.id for f in mine}
        touched = [
            i for i in incidents
            if i.robot_id == episode.robot_id and any(e.id in ids for e in i.events)
        ]  # fmt: skip
        episode.failures = [f.kind for f in sorted(mine, key=lambda f: f.stamp_ns)]
        episode.incidents = [i.id for i in touched]
        episode.lessons = [lesson for i in touched for lesson in lesson_of.get(i.id, [])]
        if touched:
            episode.outcome = "failure"
        elif not running.get(index, True):
            episode.outcome = "fault"
        else:
            episode.outcome = "success"
