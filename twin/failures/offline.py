"""``twin failures REC``: the failures of a recording.

Failures detected live (``twin live --record`` with its monitors on) are on the recording's
``/events`` channel (kind ``failure``, the :class:`twin.failures.events.FailureEvent` as JSON in
the detail). A recording made without monitors (no ``monitors`` event) is checked offline
instead: per-robot state is rebuilt in time order from ``/joints/<robot>``, ``/base/<robot>``
and ``/heartbeat/<robot>`` and the same detectors run over it, with collisions looked for
in a world built from the recording's scene attachment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from robots import RobotModel, get_model
from scenes import SceneError
from scenes.loader import parse_scene
from sync.codecs import JointSample
from sync.streams import Liveness, LivenessClock
from twin.failures.events import FailureEvent
from twin.failures.incidents import group_incidents, incident_row
from twin.failures.monitors import Monitors
from twin.record.damage import DamageReport
from twin.record.joint_blocks import recorded_states
from twin.record.recording import Recording, RecordingError, open_recording
from twin.record.schemas import EventMsg, JointMsg, PoseInFrame

log = logging.getLogger(__name__)

# Receive times in a recording come in bursts (the twin drains its socket between ticks):
# liveness is judged this much later than the newest message, as the live mirror does by
# draining before it judges, so a burst boundary does not look like stale telemetry.
OFFLINE_SLACK_NS = 250_000_000


class _Heartbeat(msgspec.Struct):
    mode: str
    grip_closed: bool = False
    holding: str = ""


@dataclass(frozen=True)
class _Base:
    position_m: tuple[float, float, float]
    orientation_xyzw: tuple[float, float, float, float]


@dataclass
class OfflineRobot:
    """A robot's state rebuilt from a recording (shaped like :class:`twin.live.links.RobotLink`)."""

    model: RobotModel
    liveness: LivenessClock
    joints: JointSample | None = None
    base: _Base | None = None
    reported: Liveness = Liveness.GONE
    heartbeat: _Heartbeat | None = None


def recorded_failures(recording: Recording) -> list[FailureEvent] | None:
    """Failure events written live; None when the recording was made without monitors."""
    failures: list[FailureEvent] = []
    monitored = False
    for message in recording.iter_messages(["/events"]):
        event = msgspec.json.decode(message.data, type=EventMsg)
        if event.kind == "monitors":
            monitored = True
        elif event.kind == "failure":
            failures.append(msgspec.json.decode(event.detail, type=FailureEvent))
    if not failures and not monitored:
        return None
    return sorted(failures, key=lambda f: f.stamp_ns)


def _in_time_order(
    recording: Recording, topics: list[str]
) -> list[tuple[int, str, str, bytes | JointMsg]]:
    """(receive time, kind, robot, data) of the channels' messages by receive time, a joint
    block's states each on its own (decoded)."""
    out: list[tuple[int, str, str, bytes | JointMsg]] = []
    for message in recording.iter_messages(topics):
        _, kind, robot_id = message.topic.split("/", 2)
        if kind == "joints":
            out += [(t, kind, robot_id, js) for t, js in recorded_states(message)]
        else:
            out.append((message.log_time_ns, kind, robot_id, message.data))
    out.sort(key=lambda m: m[0])
    return out


def detect_offline(recording: Recording, *, collisions: bool = True) -> list[FailureEvent]:
    """Run the detectors over a recording's joint, base and heartbeat channels."""
    from twin.world.world import World

    try:
        scene = parse_scene(recording.scene_text, "scene.yaml")
    except SceneError as exc:
        raise RecordingError(f"{recording.path}: its scene does not load: {exc}") from None
    robots = {
        r.id: OfflineRobot(model, LivenessClock(period_s=1.0 / model.profile.rate_hz))
        for r in scene.robots
        for model in (get_model(r.model),)
    }
    topics = [f"/{kind}/{rid}" for rid in robots for kind in ("joints", "base", "heartbeat")]
    try:
        messages = _in_time_order(recording, topics)
    except (msgspec.DecodeError, ValueError) as exc:
        raise RecordingError(f"{recording.path}: a message does not decode: {exc}") from None
    monitors = Monitors(collisions=collisions, pose_world=True)
    found: list[FailureEvent] = []
    world = World(scene) if collisions and messages else None
    try:
        for now_ns, kind, robot_id, data in messages:
            robot = robots[robot_id]
            if isinstance(data, JointMsg):
                body = data
                robot.joints = JointSample(
                    np.asarray(body.position, dtype=np.float64),
                    np.asarray(body.velocity, dtype=np.float64),
                    np.asarray(body.effort, dtype=np.float64),
                )
                robot.liveness.on_message(now_ns)
            elif kind == "base":
                pose = msgspec.json.decode(data, type=PoseInFrame).pose
                p, q = pose.position, pose.orientation
                robot.base = _Base((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))
                robot.liveness.on_message(now_ns, main=False)
            else:
                beat = msgspec.json.decode(data, type=_Heartbeat)
                robot.liveness.on_message(now_ns, main=False)
                robot.liveness.shutdown = beat.mode == "shutdown"
                robot.heartbeat = beat
            if monitors.due(now_ns):
                for each in robots.values():
                    each.reported = each.liveness.state(now_ns - OFFLINE_SLACK_NS)
                found.extend(monitors.check(now_ns, robots, world))
    except (msgspec.DecodeError, ValueError, KeyError) as exc:
        raise RecordingError(f"{recording.path}: a message does not decode: {exc}") from None
    finally:
        if world is not None:
            world.close()
    return found


def start_ns(recording: Recording) -> int | None:
    """The recording's start (the twin's metadata), else its first message's log time."""
    stamp = recording.metadata.get("twin", {}).get("start_time_ns")
    if stamp is not None and stamp.isdigit():
        return int(stamp)
    first = recording.summary()["start_ns"]
    return int(first) if first is not None else None


def failure_report(path: Path) -> dict[str, Any]:
    """A recording's failures: ``source`` (recorded/offline), ``events`` (rows) and
    ``incidents`` (the events grouped, :mod:`twin.failures.incidents`), ``damage`` (what a
    damaged or cut file lost, :class:`twin.record.damage.DamageReport`) and ``warning`` (the
    one line that says it; "" for a whole file)."""
    rows, source, failures, t0, makers, damage = _failures(path)
    incidents = [
        incident_row(i, t0, makers.get(i.robot_id, "?")) for i in group_incidents(failures)
    ]
    return {
        "source": source,
        "incidents": incidents,
        "events": rows,
        "damage": damage.as_dict(),
        "warning": damage.line(),
    }


def failure_rows(path: Path) -> tuple[list[dict[str, Any]], str]:
    """The failures of a recording as rows, and where they came from (recorded/offline)."""
    rows, source, *_ = _failures(path)
    return rows, source


def _failures(
    path: Path,
) -> tuple[list[dict[str, Any]], str, list[FailureEvent], int, dict[str, str], DamageReport]:
    recording = open_recording(path)
    failures = recorded_failures(recording)
    source = "recorded"
    if failures is None:
        source = "offline"
        failures = detect_offline(recording)
    try:
        makers = {
            r.id: get_model(r.model).manufacturer
            for r in parse_scene(recording.scene_text, "scene.yaml").robots
        }
    except SceneError:
        makers = {}
    t0 = start_ns(recording) or (failures[0].stamp_ns if failures else 0)
    rows = [
        {
            "id": f.id,
            "t_s": round((f.stamp_ns - t0) / 1e9, 3),
            "stamp_ns": f.stamp_ns,
            "robot": f.robot_id,
            "manufacturer": makers.get(f.robot_id, "?"),
            "kind": f.kind,
            "severity": f.severity,
            "details": f.details,
            **({"upright": f.upright} if f.upright is not None else {}),
        }
        for f in failures
    ]
    return rows, source, failures, t0, makers, recording.damage
