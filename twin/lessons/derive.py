"""From an incident to a lesson: where it happened, what was measured, and a condition a preview
can reproduce.

:func:`learn_from_recording` groups a recording's failures into incidents
(:mod:`twin.failures.incidents`) and makes a lesson of each one whose cause is physical (a
fall, a collision, a dropped grasp, an effort over its rating, a joint over its limit; stale
data and divergences teach a task nothing). For each it measures, from the robot's own
channels in the :data:`WINDOW_S` before the cause: the base's tilt, height and horizontal
speed, the largest effort against its rating (which joint), and what the gripper held. The
reproducible condition is derived from those figures, and says how:

* ``grasp_dropped`` -> ``grip_weakened``: the held item's grip halved at that point of the task,
* ``fall`` -> ``push``: a horizontal push of the peak base speed change measured before it,
* ``collision`` -> ``obstacle``: another body where the contact was,
* ``effort`` -> ``payload``: the load scaled by the measured effort over rating,
* ``joint_limit`` -> ``limit_margin``: the joint's range narrowed by the overshoot.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from robots import get_model
from scenes import SceneError, parse_scene
from sync.codecs import codec_for
from twin.failures.incidents import Incident, group_incidents
from twin.failures.monitors import tilt_rad
from twin.failures.offline import detect_offline, recorded_failures
from twin.lessons.store import LessonStore, Sighting
from twin.record.joint_blocks import recorded_states
from twin.record.recording import RecordedMessage, Recording, RecordingError, open_recording
from twin.record.schemas import PoseInFrame

WINDOW_S: Final = 3.0
LESSON_CAUSES: Final = frozenset({"fall", "collision", "grasp_dropped", "effort", "joint_limit"})
_NS: Final = 1_000_000_000


class _Beat(msgspec.Struct):
    holding: str = ""
    grip_closed: bool = False
    step: str = ""


@dataclass(frozen=True)
class Learnt:
    """One incident made into a lesson."""

    lesson_id: str
    new: bool
    incident: Incident
    robot: str


def _peak_effort(
    message: RecordedMessage,
    lo_ns: int,
    hi_ns: int,
    ratings: NDArray[np.float64],
    names: Sequence[str],
    peak: tuple[float, str],
) -> tuple[float, str]:
    """``peak`` (effort / rating, joint), or a higher one among the message's joint states
    received in ``[lo_ns, hi_ns]`` (a message that does not decode adds nothing)."""
    try:
        states = list(recorded_states(message))
    except (msgspec.DecodeError, ValueError):
        return peak
    for t, joints in states:
        if not lo_ns <= t <= hi_ns:
            continue
        efforts = np.abs(np.asarray(joints.effort))
        if len(efforts) == len(ratings):
            ratio = np.where(np.isfinite(ratings) & (ratings > 0), efforts / ratings, 0.0)
            i = int(np.argmax(ratio))
            if float(ratio[i]) > peak[0]:
                peak = (float(ratio[i]), names[i])
    return peak


def measure(recording: Recording, robot_id: str, model_name: str, at_ns: int) -> dict[str, Any]:
    """What the robot's channels say in the :data:`WINDOW_S` up to ``at_ns`` (log time)."""
    lo, hi = at_ns - int(WINDOW_S * _NS), at_ns + _NS // 5
    topics = [f"/base/{robot_id}", f"/heartbeat/{robot_id}", f"/joints/{robot_id}"]
    bases: list[tuple[int, tuple[float, float, float], tuple[float, float, float, float], int]] = []
    holding = step = ""
    peak = (0.0, "")
    model = get_model(model_name)
    names = codec_for(model).canonical_names
    ratings = np.array([model.joint(n).effort_limit for n in codec_for(model).names])
    for message in recording.iter_messages(topics):
        t = message.log_time_ns
        kind = message.topic.split("/")[1]
        if kind == "joints":
            peak = _peak_effort(message, lo, min(hi, at_ns), ratings, names, peak)
            continue
        if not lo <= t <= hi:
            continue
        if kind == "base":
            posed = msgspec.json.decode(message.data, type=PoseInFrame)
            p, q = posed.pose.position, posed.pose.orientation
            # speeds from the robot's own stamps: a busy twin receives in bursts, and receive
            # times a millisecond apart for poses 20 ms apart made a 1.5 m/s push read 35
            stamp = posed.timestamp.sec * _NS + posed.timestamp.nsec
            bases.append((t, (p.x, p.y, p.z), (q.x, q.y, q.z, q.w), stamp))
        elif kind == "heartbeat":
            beat = msgspec.json.decode(message.data, type=_Beat)
            if beat.holding and t <= at_ns:
                holding = beat.holding
            if t <= at_ns:
                step = beat.step
    out: dict[str, Any] = {"window_s": WINDOW_S, "holding": holding or None, "step": step or None}
    if peak[1]:
        out["peak_effort_ratio"] = round(peak[0], 3)
        out["peak_effort_joint"] = peak[1]
    before = [b for b in bases if b[0] <= at_ns]
    if before:
        _, xyz, quat, _ = before[-1]
        out["tilt_rad"] = round(tilt_rad(quat, model.base_orientation_xyzw), 4)
        out["base_height_m"] = round(xyz[2], 4)
    if len(before) >= 2:
        times = np.array([b[3] for b in before], dtype=np.float64) / _NS
        xy = np.array([b[1][:2] for b in before])
        dt = np.maximum(np.diff(times), 1e-3)
        speeds = np.linalg.norm(np.diff(xy, axis=0), axis=1) / dt
        out["speed_m_s"] = round(float(speeds[-1]), 4)
        recent = times[1:] >= times[-1] - 0.5
        if recent.any():
            out["peak_speed_change_m_s"] = round(float(np.ptp(speeds[recent])), 4)
    return out


def step_words(conditions: dict[str, Any]) -> str:
    """`` (at step carry)`` when the measured conditions name the step, else ""."""
    step = conditions.get("step")
    return f" (at step {step})" if step else ""


def reproducible(kind: str, details: str, conditions: dict[str, Any]) -> dict[str, Any]:
    """The condition a preview runs to reproduce a lesson, and how it was derived."""
    if kind == "grasp_dropped":
        named = re.match(r"dropped (\S+):", details)  # the detector names the item it lost
        return {
            "kind": "grip_weakened",
            "item": conditions.get("holding") or (named.group(1) if named else None),
            "grip_scale": 0.5,
            "derived": "the item slipped from a closed gripper: its grip is halved there",
        }
    if kind == "fall":
        push = max(0.3, float(conditions.get("peak_speed_change_m_s", 0.0)))
        return {
            "kind": "push",
            "delta_v_m_s": round(push, 3),
            "derived": "the peak horizontal base speed change in the 0.5 s before the fall "
            "(at least 0.3 m/s)",
        }
    if kind == "collision":
        return {"kind": "obstacle", "contact": details, "derived": "another body at the contact"}
    if kind == "effort":
        scale = max(1.0, float(conditions.get("peak_effort_ratio", 1.0)))
        return {
            "kind": "payload",
            "scale": round(scale, 3),
            "joint": conditions.get("peak_effort_joint"),
            "derived": "the load scaled by the measured effort over the rating",
        }
    return {
        "kind": "limit_margin",
        "details": details,
        "range_scale": 0.9,
        "derived": "a tenth of every joint's allowed range given up (a limit was reached)",
    }


def learn_from_recording(path: Path, store: LessonStore) -> list[Learnt]:
    """Make (or strengthen) a lesson of every physical incident in a recording."""
    recording = open_recording(path)
    failures = recorded_failures(recording)
    if failures is None:
        failures = detect_offline(recording)
    try:
        scene = parse_scene(recording.scene_text, "scene.yaml")
    except SceneError as exc:
        raise RecordingError(f"{path}: its scene does not load: {exc}") from None
    robots = {r.id: r for r in scene.robots}
    out: list[Learnt] = []
    for incident in group_incidents(failures):
        cause = incident.cause
        robot = robots.get(incident.robot_id)
        if cause.kind not in LESSON_CAUSES or robot is None:
            continue
        model = get_model(robot.model)
        conditions = measure(recording, robot.id, robot.model, cause.stamp_ns)
        summary = (
            f"{cause.kind.replace('_', ' ')} by {robot.id} ({model.manufacturer} "
            f"{model.name}) during {robot.task}{step_words(conditions)}: {cause.details}"
        )
        lesson, new = store.learn(
            kind=cause.kind,
            severity=incident.severity,
            task=robot.task,
            step=conditions.get("step"),
            summary=summary,
            condition=reproducible(cause.kind, cause.details, conditions),
            sighting=Sighting(
                robot=robot.id,
                model=model.name,
                manufacturer=model.manufacturer,
                stamp_ns=cause.stamp_ns,
                recording=str(Path(path).resolve()),
                incident=incident.id,
                conditions={**conditions, "consequences": incident.consequence_counts()},
            ),
            now_ns=time.time_ns(),
        )
        out.append(Learnt(lesson, new, incident, robot.id))
    return out
