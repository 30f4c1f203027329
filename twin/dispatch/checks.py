"""The dispatch gate's conditions, one function each, all pure reads of the twin's state.

The twin checks them in this order and refuses with the first that fails, naming it
(:class:`Refusal`): ``task`` (the file parses against the twin's scene and compiles),
``robot`` (the task is for the robot asked for, and the hall has it), ``preview`` (a passing
preview record for exactly these bytes), ``lessons`` (the preview ran the task under every
lesson that concerns it: none was learnt after it, and it checked each one in the twin's
lessons database), ``live``, ``in_sync``,
``stop`` (no e-stop, no protective stop, mode running or idle), ``plan`` (every joint target
known, finite and within limits; the base path on the floor), then the gate's own
``gateway`` (the robot's gateway is connected to the command channel) and ``busy`` (no
dispatch of it running).

The ``plan`` condition is :func:`twin.plan.checks.plan_problems`, which the gateway side
shares: the hall emulator checks every plan again on receipt.

Tolerances (why these numbers):

* ``live``: the newest joint state at most :data:`SILENCE_TOLERANCE_S` old, and no gap
  between joint states longer than that within the last :data:`LIVE_HOLD_S` (a robot that
  just came back, or keeps falling silent, is not trusted yet). Shorter STALE blips -- a
  500 Hz robot is STALE after 6 ms without data, which a busy host's scheduler causes -- do
  not count, as the failure monitors' ``stale`` needs 0.5 s of silence.
* ``in_sync``: no divergence (the twin's failure monitors: a reported joint outside what its
  speed limit allows since the previous report) outstanding, and none raised in the last
  :data:`DIVERGENCE_HOLD_S`; the twin's world applied the robot's newest report within
  :data:`LAG_TOLERANCE_S` (the mirror is not lagging this robot's stream); the newest
  heartbeat younger than :data:`HEARTBEAT_MAX_AGE_S`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from scenes.model import Scene
from scenes.tasks import Task, TaskError, parse_task_text
from sync.command import DispatchRequest
from sync.streams import Liveness
from twin.lessons.concern import concerning
from twin.lessons.store import Lesson
from twin.live.links import RobotLink
from twin.plan.checks import plan_problems
from twin.plan.model import TaskPlan
from twin.preview.compile import compile_plan
from twin.preview.store import (
    PreviewRecord,
    RecordError,
    digest_previewed_at,
    read_record,
    record_path,
)

if TYPE_CHECKING:
    from twin.live.mirror import Mirror

log = logging.getLogger(__name__)

LIVE_HOLD_S: Final = 1.0
SILENCE_TOLERANCE_S: Final = 0.25
DIVERGENCE_HOLD_S: Final = 5.0
LAG_TOLERANCE_S: Final = 0.1
HEARTBEAT_MAX_AGE_S: Final = 1.0
_RUNNING_MODES: Final = frozenset({"running", "idle"})


@dataclass(frozen=True)
class Refusal:
    """A gate condition that failed: its name and one line saying why."""

    condition: str
    detail: str


def preview_refusal(
    data: bytes, task_path: str, robot_id: str, store_dir: Path | None = None
) -> Refusal | PreviewRecord:
    """``preview``: a passing record for exactly these bytes, for this robot (returned)."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        record = read_record(digest, store_dir)
    except RecordError as exc:
        return Refusal("preview", str(exc))
    if record is None:
        why = f"no preview of these exact bytes (sha256 {digest[:12]})"
        earlier = digest_previewed_at(task_path, store_dir)
        if earlier is not None:
            why = f"{task_path} changed since its preview (sha256 {earlier[:12]} -> {digest[:12]})"
        return Refusal("preview", f"{why}; run `twin preview {task_path}` first")
    if record.task_sha256 != digest:
        return Refusal(
            "preview", f"preview record {record_path(digest, store_dir)} is for other bytes"
        )
    if not record.passed:
        reasons = "; ".join(str(r.get("detail", r)) for r in record.reasons[:3]) or "no reason"
        return Refusal("preview", f"the preview of {task_path} failed: {reasons}")
    if record.robot != robot_id:
        return Refusal("preview", f"previewed for {record.robot}, not {robot_id}")
    return record


def lessons_refusal(
    task: Task,
    task_path: str,
    record: PreviewRecord,
    scene: Scene,
    lessons: Sequence[Lesson],
    database: Path | None = None,
) -> Refusal | None:
    """``lessons``: the first lesson concerning ``task`` that its passing preview did not run it
    under: born after the preview, or not among those it checked (a ``--no-lessons`` preview,
    one whose lessons database failed, one against another database than the gate's
    ``database``, or a record made before previews said which they checked)."""
    checked = record.lessons_checked
    for lesson in concerning(lessons, task, scene):
        if lesson.created_ns > record.created_ns:
            why = "came after this preview"
        elif checked is None:
            why = "was not checked by this preview (it ran without lessons)"
        elif database is not None and not _same_file(checked.database, database):
            why = f"was not checked by this preview (it checked the lessons in {checked.database})"
        elif lesson.id not in checked.ids:
            why = "was not checked by this preview"
        else:
            continue
        first = lesson.sightings[0] if lesson.sightings else None
        who = f" by {first.robot}" if first is not None else ""
        where = f"at step {lesson.step}" if lesson.step else f"during {lesson.task}"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(lesson.created_ns / 1e9))
        return Refusal(
            "lessons",
            f"lesson {lesson.id}, {lesson.kind.replace('_', ' ')}{who} {where} on {when} UTC, "
            f"{why}; run `twin preview {task_path}` again",
        )
    return None


def _same_file(recorded: str, database: Path) -> bool:
    """Whether a preview record's lessons database is the gate's ``database``."""
    try:
        return Path(recorded).samefile(database)
    except OSError:  # one of them is missing: compare where they would be
        return Path(recorded).resolve() == database.resolve()


def live_refusal(link: RobotLink, long_gap_mono_ns: int | None, now_mono_ns: int) -> Refusal | None:
    """``live``: joint states flowing now and without a gap over :data:`SILENCE_TOLERANCE_S`
    within the last :data:`LIVE_HOLD_S` (``long_gap_mono_ns``: when the newest such gap ended).
    """
    robot = link.robot_id
    last = link.liveness.last_rx_ns
    if last == 0 or link.joints is None:
        return Refusal("live", f"{robot} never reported a joint state to this twin")
    age_s = (now_mono_ns - last) / 1e9
    if link.reported == Liveness.GONE or age_s > SILENCE_TOLERANCE_S:
        return Refusal("live", f"{robot} is {link.reported} (last joint state {age_s:.2f} s ago)")
    if long_gap_mono_ns is not None and now_mono_ns - long_gap_mono_ns < LIVE_HOLD_S * 1e9:
        ago = (now_mono_ns - long_gap_mono_ns) / 1e9
        return Refusal(
            "live",
            f"{robot} was STALE {ago:.2f} s ago (joint states more than "
            f"{SILENCE_TOLERANCE_S:g} s apart; needs {LIVE_HOLD_S:g} s without)",
        )
    return None


def sync_refusal(
    link: RobotLink,
    *,
    monitoring: bool,
    diverging: bool,
    last_divergence_mono_ns: int | None,
    heartbeat_age_s: float | None,
    now_mono_ns: int,
) -> Refusal | None:
    """``in_sync``: see the module docstring for the tolerances."""
    robot = link.robot_id
    if not monitoring:
        return Refusal("in_sync", "the twin runs without failure monitors; it cannot judge")
    if diverging:
        return Refusal("in_sync", f"{robot}'s reports diverge from the twin's prediction now")
    if last_divergence_mono_ns is not None:
        ago = (now_mono_ns - last_divergence_mono_ns) / 1e9
        if ago < DIVERGENCE_HOLD_S:
            return Refusal(
                "in_sync",
                f"{robot} diverged from the twin {ago:.1f} s ago "
                f"(needs {DIVERGENCE_HOLD_S:g} s in agreement)",
            )
    lag = (now_mono_ns - link.applied_mono_ns) / 1e9
    if lag > LAG_TOLERANCE_S:
        return Refusal(
            "in_sync",
            f"the twin's world lags {robot}'s reports by {lag:.2f} s "
            f"(tolerance {LAG_TOLERANCE_S:g} s)",
        )
    if heartbeat_age_s is None:
        return Refusal("in_sync", f"{robot} never sent a heartbeat")
    if heartbeat_age_s > HEARTBEAT_MAX_AGE_S:
        return Refusal("in_sync", f"{robot}'s newest heartbeat is {heartbeat_age_s:.1f} s old")
    return None


def stop_refusal(link: RobotLink) -> Refusal | None:
    """``stop``: the newest heartbeat reports no e-stop, no protective stop, a working mode."""
    hb = link.heartbeat
    robot = link.robot_id
    if hb is None:
        return Refusal("stop", f"{robot} never sent a heartbeat")
    if hb.estop:
        return Refusal("stop", f"{robot} reports its emergency stop engaged")
    if hb.protective_stop:
        return Refusal("stop", f"{robot} reports a protective stop")
    if hb.mode not in _RUNNING_MODES:
        return Refusal("stop", f"{robot} reports mode {hb.mode!r} (needs running or idle)")
    return None


def check_request(
    request: DispatchRequest,
    mirror: Mirror,
    *,
    heartbeat_ns: Mapping[str, int],
    divergence_ns: Mapping[str, int],
    long_gap_ns: Mapping[str, int],
    lessons: Sequence[Lesson] = (),
    lessons_database: Path | None = None,
) -> Refusal | tuple[str, str, TaskPlan]:
    """The twin-state conditions in order (``task`` .. ``plan``): the first refusal, or (task
    name, sha256 of the file, compiled plan). ``heartbeat_ns``/``divergence_ns``: monotonic
    time of each robot's newest heartbeat / divergence event / end of a long joint-state gap;
    ``lessons``: the twin's lessons, from ``lessons_database``."""
    robot_id = request.robot_id
    now = time.monotonic_ns()
    try:
        text = request.task_text.decode("utf-8")
        task = parse_task_text(text, request.task_path, mirror.scene)
    except UnicodeDecodeError:
        return Refusal("task", f"{request.task_path}: not UTF-8 text")
    except TaskError as exc:
        first = "; ".join(str(p) for p in exc.problems[:3])
        return Refusal("task", f"{first}" + (" ..." if len(exc.problems) > 3 else ""))
    link = mirror.robots.get(robot_id)
    if link is None:
        return Refusal("robot", f"no robot {robot_id!r} in {mirror.scene_name!r}")
    if task.robot != robot_id:
        return Refusal("robot", f"{request.task_path} is a task for {task.robot}, not {robot_id}")
    record = preview_refusal(request.task_text, request.task_path, robot_id)
    if isinstance(record, Refusal):
        return record
    if record.scene_name != mirror.scene_name:
        return Refusal(
            "preview",
            f"{request.task_path} was previewed in {record.scene_name!r}, "
            f"not in this hall ({mirror.scene_name!r}); preview it here",
        )
    refusal = lessons_refusal(
        task, request.task_path, record, mirror.scene, lessons, lessons_database
    )
    if refusal is not None:
        return refusal
    refusal = live_refusal(link, long_gap_ns.get(robot_id), now)
    if refusal is None:
        monitors = mirror.monitors
        heartbeat = heartbeat_ns.get(robot_id)
        refusal = sync_refusal(
            link,
            monitoring=monitors is not None,
            diverging=monitors is not None and monitors.active(robot_id, "divergence"),
            last_divergence_mono_ns=divergence_ns.get(robot_id),
            heartbeat_age_s=None if heartbeat is None else (now - heartbeat) / 1e9,
            now_mono_ns=now,
        )
    refusal = refusal or stop_refusal(link)
    if refusal is not None:
        return refusal
    try:  # the plan that passed preview; compiled here only for a record without one
        plan = record.plan if record.plan is not None else compile_plan(task, mirror.scene)
    except Exception as exc:  # a compiler bug must not kill the twin
        log.exception("compiling %s failed", request.task_path)
        return Refusal("task", f"{request.task_path} does not compile: {exc}")
    if plan.robot != robot_id:
        return Refusal("plan", f"the compiled plan is for {plan.robot}, not {robot_id}")
    problems = plan_problems(plan, link.model, mirror.scene)
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        return Refusal("plan", "; ".join(problems[:3]) + more)
    return task.name, hashlib.sha256(request.task_text).hexdigest(), plan
