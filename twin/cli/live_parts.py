"""What ``twin live`` attaches to its mirror: the recorder (and what it records besides the
messages: ingest events, failures), the live Foxglove server, and the live lessons (stored,
published on the fan-out, recorded, and sent to the concerned robots' gateways).

Each part that cannot start is one line on stderr; the twin mirrors on without it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from scenes.model import Scene
    from twin.dispatch.gate import DispatchGate
    from twin.lessons.store import LessonStore
    from twin.live.foxglove_feed import FoxgloveFeed
    from twin.live.mirror import Mirror
    from twin.record.recorder_process import RecorderProcess

err = Console(stderr=True, highlight=False, soft_wrap=True)


def start_recorder(
    record: Path, scene: Path | None, loaded: Scene, *, raw_joints: bool = False
) -> RecorderProcess | None:
    """The recorder, in a process of its own (:mod:`twin.record.recorder_process`), with the
    Foxglove channels (:mod:`twin.record.foxglove_channels`), and the joint states' vendor
    frames with ``raw_joints``; None, and one line on stderr, when it cannot start."""
    from importlib.metadata import PackageNotFoundError, version

    from scenes import DEFAULT_SCENE
    from twin.record.foxglove_channels import DISPLAY_HZ
    from twin.record.recorder import RecorderError
    from twin.record.recorder_process import RecorderProcess

    try:
        twin_version = version("hall-twin")
    except PackageNotFoundError:
        twin_version = "unknown"
    scene_text = (scene or DEFAULT_SCENE).read_text(encoding="utf-8")
    try:
        return RecorderProcess(
            record,
            loaded,
            scene_text,
            twin_version=twin_version,
            display_hz=DISPLAY_HZ,
            raw_joints=raw_joints,
        )
    except RecorderError as exc:
        err.print(f"twin live: {exc}", markup=False)
        return None


def start_foxglove(loaded: Scene, host: str, port: int) -> FoxgloveFeed | None:
    """The live Foxglove WebSocket server on ``host``:``port``, in a process of its own
    (:mod:`twin.live.foxglove_feed`); None, and one line on stderr, when it cannot serve."""
    from twin.live.foxglove_feed import FoxgloveFeed, FoxgloveServeError
    from twin.record.foxglove_channels import DISPLAY_HZ

    try:
        return FoxgloveFeed(loaded, host=host, port=port, display_hz=DISPLAY_HZ)
    except FoxgloveServeError as exc:
        err.print(f"twin live: {exc}", markup=False)
        return None


def start_lessons(
    mirror: Mirror,
    scene: Scene,
    path: Path | None,
    recorder: RecorderProcess | None,
    gate: DispatchGate | None,
) -> LessonStore | None:
    """Incidents and lessons live: each lesson stored, published on the fan-out (viewers draw
    it), recorded, and sent to the concerned robots' gateways when there is a command channel.
    A database that cannot be used is one line (and ``twin status`` says so); the twin mirrors
    on."""
    from twin.lessons.live import LiveLessons
    from twin.lessons.store import LessonStore, LessonStoreError, default_path

    try:
        store = LessonStore(path or default_path())
    except LessonStoreError as exc:
        err.print(f"twin live: lessons off: {exc}", markup=False)
        why_off = str(exc)
        mirror.lessons_status = lambda: {"enabled": False, "why_off": why_off, "made": 0}
        return None

    def publish(robot_id: str, lesson_id: str, detail: dict[str, Any]) -> None:
        text = json.dumps(detail)
        mirror.event("lesson", robot_id, text)
        if recorder is not None:
            recorder.event("lesson", robot_id, text, time.time_ns())
        err.print(
            f"lesson {lesson_id} ({'new' if detail['new'] else 'strengthened'}): "
            f"{detail['kind']} by {robot_id} during {detail['task']}, shared with "
            f"{', '.join(detail['concerns'])}",
            markup=False,
        )
        if gate is not None:
            sent = gate.courier.send(detail)
            err.print(
                f"lesson {lesson_id} sent to the gateways of {', '.join(sent) or 'no robot'}",
                markup=False,
            )

    recording = str(recorder.path.resolve()) if recorder is not None else "live"
    lessons = LiveLessons(store, scene, mirror.robots, publish, recording=recording)
    mirror.on_failure.append(lessons.on_failure)
    mirror.after_monitors.append(lessons.poll)
    mirror.lessons_status = lessons.status
    err.print(f"lessons: {store.path}", markup=False)
    return store


def record_ingest_events(mirror: Mirror, recorder: RecorderProcess) -> None:
    """Also record the ingest's events (epoch changes, resyncs) on ``/events``.

    Liveness changes are raised inside the mirror itself and are not recorded yet.
    """
    forward = mirror.ingest.on_event

    def on_event(kind: str, source: str, detail: str) -> None:
        forward(kind, source, detail)
        recorder.event(kind, source, detail, time.time_ns())

    mirror.ingest.on_event = on_event


def record_failures(mirror: Mirror, recorder: RecorderProcess) -> None:
    """Record failure events on ``/events`` (kind ``failure``, detail: the event as JSON).

    A first ``monitors`` event says detection was on, so ``twin failures`` can tell a
    recording without failures from one recorded without detection.
    """
    import msgspec

    from twin.failures.events import FailureEvent

    recorder.event("monitors", "twin", "failure detection on", time.time_ns())

    def on_failure(failure: FailureEvent) -> None:
        detail = msgspec.json.encode(failure).decode()
        recorder.event("failure", failure.robot_id, detail, failure.stamp_ns)

    mirror.on_failure.append(on_failure)
