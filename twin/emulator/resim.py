"""``twin resim``: what-if re-simulation of a recording from one instant.

The scene comes from the recording's ``scene.yaml`` attachment;
:class:`twin.record.replay_source.ReplaySource` gives every robot's recorded state at ``--at``.
A fresh, unperturbed :class:`twin.emulator.physics.EmulatedHall` is put into that state (joints,
base pose, the stabiliser there; robots that were fallen start released), the ``--set``
overrides are applied (``friction``: lateral friction of every robot link and the floor;
``mass_scale``: every robot link's mass and inertia times the factor), and physics runs on, as
fast as it can, each robot following its task loop from there. What it produces is written with
the same :class:`twin.record.recorder.Recorder` as a live recording: joint states at each
profile's rate, base pose at 100 Hz (or the profile rate if lower), heartbeats at 10 Hz, cranes
at 20 Hz, stamped on the original recording's clock from the ``--at`` instant on, so both files
line up.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Final

from robots import get_model
from robots.bullet import pb
from scenes import SceneError, parse_scene
from sync.codecs import VendorCodec, codec_for
from sync.protocol import (
    BaseState,
    CraneState,
    Heartbeat,
    Kind,
    Received,
    encode_payload,
    pack_header,
    topic,
    unpack_header,
)
from twin.emulator.actors import FALLEN_HEIGHT_FRACTION
from twin.emulator.physics import EmulatedHall, Perturbation, RobotSample
from twin.record.foxglove_channels import DISPLAY_HZ as FOXGLOVE_DISPLAY_HZ
from twin.record.recorder import Recorder, RecorderError
from twin.record.recording import RecordingError, open_recording
from twin.record.replay_source import ReplaySource

log = logging.getLogger(__name__)

BASE_RATE_HZ: Final = 100.0
HEARTBEAT_RATE_HZ: Final = 10.0
CRANE_RATE_HZ: Final = 20.0
OVERRIDE_KEYS: Final = ("friction", "mass_scale")
_NS: Final = 1_000_000_000


class ResimInputError(ValueError):
    """A resim request that does not fit (the message says why, in one line)."""


@dataclass(frozen=True)
class ResimResult:
    """What a resim wrote: the file, simulated and wall seconds, messages."""

    path: Path
    simulated_s: float
    wall_s: float
    messages: int

    @property
    def realtime_factor(self) -> float:
        """Simulated seconds per wall second."""
        return self.simulated_s / self.wall_s if self.wall_s > 0.0 else math.inf


def parse_overrides(items: Sequence[str]) -> dict[str, float]:
    """``["friction=0.9", "mass_scale=1.1"]`` -> a dict; ResimInputError for anything else."""
    overrides: dict[str, float] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in OVERRIDE_KEYS:
            known = ", ".join(OVERRIDE_KEYS)
            raise ResimInputError(f"--set {item!r}: expected KEY=VALUE with KEY one of {known}")
        try:
            value = float(text)
        except ValueError:
            raise ResimInputError(f"--set {item!r}: {text!r} is not a number") from None
        if not math.isfinite(value) or value <= 0.0:
            raise ResimInputError(f"--set {item!r}: {key} must be a positive number")
        overrides[key] = value
    return overrides


def default_output(recording: Path, at_s: float) -> Path:
    """``<stem>-resim-<at>s.mcap`` beside the recording."""
    return recording.with_name(f"{recording.stem}-resim-{at_s:g}s.mcap")


def apply_overrides(hall: EmulatedHall, overrides: dict[str, float]) -> None:
    """Set every robot link's (and the floor's) friction, scale every robot link's mass."""
    client = hall.world.client
    friction = overrides.get("friction")
    mass_scale = overrides.get("mass_scale")
    bodies = [hall.world.robot(rid).body for rid in hall.robot_ids]
    for body in bodies:
        for link in range(-1, pb.getNumJoints(body, physicsClientId=client)):
            info = pb.getDynamicsInfo(body, link, physicsClientId=client)
            if mass_scale is not None and info[0] > 0.0:
                pb.changeDynamics(
                    body,
                    link,
                    mass=info[0] * mass_scale,
                    localInertiaDiagonal=[v * mass_scale for v in info[2]],
                    physicsClientId=client,
                )
            if friction is not None:
                pb.changeDynamics(body, link, lateralFriction=friction, physicsClientId=client)
    if friction is not None:
        floor = hall.world.resolve("floor").body
        pb.changeDynamics(floor, -1, lateralFriction=friction, physicsClientId=client)


def _twin_version() -> str:
    try:
        return version("hall-twin")
    except PackageNotFoundError:  # pragma: no cover - not installed
        return "unknown"


def resimulate(
    recording_path: Path,
    at_s: float,
    *,
    seconds: float = 10.0,
    overrides: dict[str, float] | None = None,
    seed: int = 0,
    output: Path | None = None,
) -> ResimResult:
    """Re-simulate ``recording_path`` from ``at_s`` for ``seconds`` into a new recording.

    Raises:
        ResimInputError: a bad file, scene, instant, duration or output path (one line).
    """
    overrides = dict(overrides or {})
    if not math.isfinite(seconds) or seconds <= 0.0:
        raise ResimInputError(f"--seconds {seconds:g}: must be positive")
    try:
        recording = open_recording(recording_path)
        scene_text = recording.scene_text
        scene = parse_scene(scene_text, f"{recording_path}:scene.yaml")
        source = ReplaySource(recording, scene)
    except RecordingError as exc:
        raise ResimInputError(str(exc)) from None
    except SceneError as exc:
        first = exc.problems[0] if exc.problems else "invalid"
        raise ResimInputError(f"{recording_path}: its scene.yaml is not valid: {first}") from None
    if not 0.0 <= at_s <= source.duration_s:
        raise ResimInputError(
            f"--at {at_s:g} is outside the recording (0..{source.duration_s:.3f} s)"
        )
    source.seek(at_s)
    origin_ns = source.start_ns + round(at_s * _NS)
    path = output if output is not None else default_output(recording_path, at_s)
    if path.resolve() == Path(recording_path).resolve():
        raise ResimInputError(f"--record {path}: would overwrite the recording itself")
    started = time.perf_counter()
    with EmulatedHall(scene, seed=seed, perturbation=Perturbation.none()) as hall:
        for robot in scene.robots:
            view = source.robots[robot.id]
            if view.stamp_ns == 0:
                log.warning(
                    "robot %s: no joint state before %.3f s; starts at rest", robot.id, at_s
                )
                continue
            model = get_model(robot.model)
            fallen = view.base_position_m[2] < FALLEN_HEIGHT_FRACTION * model.base_height_m
            hall.restore(
                robot.id,
                dict(zip(view.joint_names, view.positions, strict=True)),
                view.base_position_m,
                view.base_orientation_xyzw,
                task_time_s=at_s,
                fallen=fallen,
            )
        apply_overrides(hall, overrides)
        try:
            recorder = Recorder(
                path, scene, scene_text, twin_version=_twin_version(), start_ns=origin_ns,
                display_hz=FOXGLOVE_DISPLAY_HZ,
            )  # fmt: skip
        except RecorderError as exc:
            raise ResimInputError(str(exc)) from None
        with recorder:
            meta = {
                "source": str(recording_path),
                "at_s": f"{at_s:g}",
                "seconds": f"{seconds:g}",
                "seed": str(seed),
                "overrides": ",".join(f"{k}={v:g}" for k, v in sorted(overrides.items())),
                "origin_ns": str(origin_ns),
            }
            recorder.add_metadata("resim", meta)
            detail = f"resim of {recording_path} at {at_s:g} s, " + (meta["overrides"] or "as is")
            recorder.event("resim", "twin", detail, origin_ns)
            _run(hall, recorder, seconds, origin_ns, seed)
            messages = recorder.messages
    wall_s = time.perf_counter() - started
    return ResimResult(path, seconds, wall_s, messages)


def _run(hall: EmulatedHall, recorder: Recorder, seconds: float, origin_ns: int, seed: int) -> None:
    """Step the hall for ``seconds``, feeding every due stream to the recorder in time order."""
    scene = hall.scene
    epoch = zlib.crc32(f"resim:{seed}".encode()) or 1
    # (next due ns, order, kind, source, period ns); order keeps ties deterministic
    due: list[tuple[int, int, Kind, str, float]] = []
    codecs: dict[str, VendorCodec] = {}
    for robot in scene.robots:
        model = get_model(robot.model)
        codecs[robot.id] = codec_for(model)
        rate = model.profile.rate_hz
        due.append((0, len(due), Kind.JOINT_STATE, robot.id, _NS / rate))
        due.append((0, len(due), Kind.BASE, robot.id, _NS / min(BASE_RATE_HZ, rate)))
        due.append((0, len(due), Kind.HEARTBEAT, robot.id, _NS / HEARTBEAT_RATE_HZ))
    for crane in scene.cranes:
        due.append((0, len(due), Kind.CRANE, crane.id, _NS / CRANE_RATE_HZ))
    heapq.heapify(due)
    counts = [0] * len(due)
    tasks = {r.id: r.task for r in scene.robots}
    end_ns = round(seconds * _NS)
    step_ns = hall.time_step_s * _NS
    total_steps = math.ceil(end_ns / step_ns)
    for step in range(total_steps + 1):
        horizon_ns = min(end_ns, round((step + 1) * step_ns))
        samples: dict[str, RobotSample] = {}
        while due and due[0][0] < horizon_ns:
            t_ns, order, kind, source_id, period_ns = heapq.heappop(due)
            if kind == Kind.CRANE:
                c = hall.crane_sample(source_id)
                payload = encode_payload(CraneState(c.bridge_m, c.trolley_m, c.hoist_m, c.moving))
            else:
                if source_id not in samples:
                    samples[source_id] = hall.sample(source_id)
                s = samples[source_id]
                if kind == Kind.JOINT_STATE:
                    payload = codecs[source_id].encode(s.positions, s.velocities, s.efforts)
                elif kind == Kind.BASE:
                    payload = encode_payload(
                        BaseState(
                            s.base_position_m,
                            s.base_orientation_xyzw,
                            s.base_linear_velocity_m_s,
                            s.base_angular_velocity_rad_s,
                            s.base_linear_acceleration_m_s2,
                        )
                    )
                else:
                    model = get_model(scene.robot(source_id).model)
                    payload = encode_payload(
                        Heartbeat(
                            "fault" if s.fallen else "running", False, s.fallen,
                            model.manufacturer, model.name, tasks[source_id],
                            cycle=hall.task_cycle(source_id),
                            step=hall.task_step(source_id),
                        )
                    )  # fmt: skip
            seq = counts[order]
            counts[order] += 1
            stamp_ns = origin_ns + t_ns
            header = unpack_header(pack_header(kind, seq, stamp_ns, epoch))
            recorder.sink(Received(stamp_ns, source_id, header, topic(kind, source_id), payload))
            heapq.heappush(due, (round((seq + 1) * period_ns), order, kind, source_id, period_ns))
        if step < total_steps:
            hall.step()
