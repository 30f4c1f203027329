"""Failure detection: each detector on synthetic robot state, and `twin failures` end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from robots import RobotModel, get_model
from scenes import load_scene
from sync.codecs import JointSample, codec_for
from sync.streams import Liveness, LivenessClock
from twin.failures.events import FailureEvent
from twin.failures.monitors import Monitors, tilt_rad
from twin.failures.offline import detect_offline, start_ns
from twin.record.recording import open_recording
from twin.world.world import World

MS = 1_000_000
STEP_NS = 50 * MS  # the monitors' default period (20 Hz)


@dataclass(frozen=True)
class Base:
    position_m: tuple[float, float, float]
    orientation_xyzw: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Grip:
    grip_closed: bool = False
    holding: str = ""


@dataclass
class FakeRobot:
    """Link-like robot state, as the detectors read it."""

    model: RobotModel
    joints: JointSample | None = None
    base: Base | None = None
    reported: Liveness = Liveness.LIVE
    liveness: LivenessClock = field(default_factory=lambda: LivenessClock(period_s=0.01))
    heartbeat: Grip | None = None


FALL_AT_S = 4.0  # the fall_recording fixture's "T3-04:fall@4s"
FALL_WITHIN_S = 1.0
"""An injected fall (twin.emulator.actors.EmulatedRobot.inject_fall: motors cut, pelvis shoved
for 0.3 s) has the robot down within about a second; detection cannot come before it."""
CLOCKS_S = 0.05  # the emulator's fault clock and the twin's start differ by milliseconds


def fake(model_name: str = "tessel_t3") -> FakeRobot:
    model = get_model(model_name)
    n = len(codec_for(model).names)
    zeros = np.zeros(n)
    robot = FakeRobot(model, JointSample(zeros.copy(), zeros.copy(), zeros.copy()))
    robot.base = Base((0.0, 0.0, model.base_height_m))
    return robot


def run(monitors: Monitors, robot: FakeRobot, steps: int, start_ns: int) -> list[FailureEvent]:
    found: list[FailureEvent] = []
    for k in range(steps):
        found += monitors.check(start_ns + k * STEP_NS, {"R1": robot}, None)
    return found


def quat_about_x(angle_rad: float) -> tuple[float, float, float, float]:
    return (math.sin(angle_rad / 2), 0.0, 0.0, math.cos(angle_rad / 2))


def test_a_fall_by_height_is_one_critical_event_until_the_robot_is_up_again() -> None:
    monitors, robot = Monitors(collisions=False), fake()
    assert run(monitors, robot, 10, 0) == []
    robot.base = Base((0.0, 0.0, 0.3 * robot.model.base_height_m))
    fell = run(monitors, robot, 40, 10 * STEP_NS)
    assert [(f.robot_id, f.kind, f.severity) for f in fell] == [("R1", "fall", "critical")]
    assert fell[0].stamp_ns == 10 * STEP_NS and fell[0].id == "F0001"
    assert "base height" in fell[0].details
    robot.base = Base((0.0, 0.0, robot.model.base_height_m))  # up again: re-armed after a hold
    assert run(monitors, robot, 40, 50 * STEP_NS) == []
    robot.base = Base((0.0, 0.0, 0.2))
    again = run(monitors, robot, 5, 90 * STEP_NS)
    assert [f.kind for f in again] == ["fall"] and again[0].id == "F0002"


def test_a_fall_by_tilt_is_one_event_and_a_lean_is_none() -> None:
    monitors, robot = Monitors(collisions=False), fake()
    height = robot.model.base_height_m
    robot.base = Base((0.0, 0.0, height), quat_about_x(math.radians(40)))
    assert run(monitors, robot, 10, 0) == []
    for angle in (65, 80, 70, 90):  # stays tipped over, wobbling
        robot.base = Base((0.0, 0.0, 0.6 * height), quat_about_x(math.radians(angle)))
        run_events = run(monitors, robot, 5, (10 + angle) * STEP_NS)
        assert [f.kind for f in run_events] == (["fall"] if angle == 65 else [])
        if run_events:
            assert "tilt" in run_events[0].details
    assert math.isclose(math.degrees(tilt_rad(quat_about_x(math.radians(65)), (0, 0, 0, 1))), 65)


def test_a_joint_over_its_limit_is_one_error_naming_joint_value_and_limit() -> None:
    monitors, robot = Monitors(collisions=False), fake()
    limits = [robot.model.joint(n) for n in codec_for(robot.model).names]
    i = next(k for k, j in enumerate(limits) if math.isfinite(j.upper))
    assert robot.joints is not None
    robot.joints.positions[i] = limits[i].upper + 0.01  # within the 0.02 rad margin: fine
    assert run(monitors, robot, 5, 0) == []
    robot.joints.positions[i] = limits[i].upper + 0.1
    found = run(monitors, robot, 20, 5 * STEP_NS)
    assert [(f.kind, f.severity) for f in found] == [("joint_limit", "error")]
    name = codec_for(robot.model).canonical_names[i]
    assert name in found[0].details and f"{limits[i].upper + 0.1:.3f}" in found[0].details
    assert f"{limits[i].upper:.3f}" in found[0].details


def test_an_effort_over_its_rating_is_one_warning_despite_noise() -> None:
    monitors, robot = Monitors(collisions=False), fake()
    limits = [robot.model.joint(n) for n in codec_for(robot.model).names]
    i = next(k for k, j in enumerate(limits) if math.isfinite(j.effort_limit))
    assert robot.joints is not None
    found = []
    for k in range(40):  # hovering around the rating: over, just under, over...
        robot.joints.efforts[i] = -limits[i].effort_limit * (1.08 if k % 2 else 0.97)
        found += run(monitors, robot, 1, k * STEP_NS)
    assert [(f.kind, f.severity) for f in found] == [("effort", "warning")]


def test_a_motor_saturating_at_its_rating_and_a_stale_blip_are_no_failures() -> None:
    monitors, robot = Monitors(collisions=False), fake()
    limits = [robot.model.joint(n) for n in codec_for(robot.model).names]
    i = next(k for k, j in enumerate(limits) if math.isfinite(j.effort_limit))
    assert robot.joints is not None
    robot.joints.efforts[i] = limits[i].effort_limit * 1.001  # at its rating, plus noise
    robot.reported = Liveness.LIVE
    assert run(monitors, robot, 5, 0) == []
    robot.reported = Liveness.STALE  # silent for 0.1 s only: shown live, not a failure
    robot.liveness.last_rx_ns = 5 * STEP_NS
    assert run(monitors, robot, 2, 5 * STEP_NS + 100 * 1_000_000) == []


def test_stale_telemetry_is_one_warning_and_a_shutdown_is_none() -> None:
    monitors, robot = Monitors(collisions=False), fake()
    robot.reported = Liveness.GONE  # never heard: not a failure
    assert run(monitors, robot, 5, 0) == []
    robot.reported = Liveness.LIVE
    assert run(monitors, robot, 5, 5 * STEP_NS) == []
    robot.reported = Liveness.STALE
    stale = run(monitors, robot, 5, 10 * STEP_NS)
    robot.reported = Liveness.GONE
    stale += run(monitors, robot, 5, 15 * STEP_NS)
    assert [(f.kind, f.severity) for f in stale] == [("stale", "warning")]
    robot.reported = Liveness.LIVE
    assert run(monitors, robot, 5, 20 * STEP_NS) == []
    robot.liveness.shutdown = True
    robot.reported = Liveness.GONE
    assert run(monitors, robot, 5, 25 * STEP_NS) == []


def test_two_robots_put_into_each_other_are_one_collision() -> None:
    scene = load_scene()
    with World(scene) as world:
        robots = {r.id: fake(r.model) for r in scene.robots[:2]}
        for robot in robots.values():
            robot.base = None  # the world is posed already (as live)
        monitors = Monitors()
        before = [f for k in range(10) for f in monitors.check(k * STEP_NS, robots, world)]
        a, b = list(robots)
        position, orientation = world.base_pose(b)
        world.set_base_pose(a, (position[0] + 0.05, position[1], position[2]), orientation)
        after = [f for k in range(10, 60) for f in monitors.check(k * STEP_NS, robots, world)]
    assert [f for f in before if f.kind == "collision" and "robot:" in f.details[10:]] == []
    hits = [f for f in after if f.kind == "collision" and f"robot:{b}" in f.details]
    assert [(f.robot_id, f.severity) for f in hits] == [(a, "error")]


def test_an_item_slipping_out_of_a_closed_gripper_is_a_dropped_grasp() -> None:
    monitors = Monitors(collisions=False)
    robot = fake()
    t = 0
    found: list[FailureEvent] = []
    for beat in (
        Grip(),  # open, empty
        Grip(grip_closed=True, holding="part-1"),  # picked up
        Grip(grip_closed=True, holding="part-1"),
        Grip(grip_closed=False, holding=""),  # placed: opening the gripper is no drop
        Grip(grip_closed=True, holding="part-2"),
        Grip(grip_closed=True, holding=""),  # slipped out, gripper still shut
        Grip(grip_closed=True, holding=""),  # one event, not one per check
    ):
        robot.heartbeat = beat
        found += monitors.check(t, {"R1": robot}, None)
        t += STEP_NS
    drops = [f for f in found if f.kind == "grasp_dropped"]
    assert [(f.robot_id, f.severity, f.stamp_ns) for f in drops] == [("R1", "error", 5 * STEP_NS)]
    assert "part-2" in drops[0].details


def test_a_dropped_grasp_says_whether_the_robot_stood_upright() -> None:
    height = get_model("tessel_t3").base_height_m
    postures = {
        "bench lean": (Base((0.0, 0.0, height), quat_about_x(math.radians(13))), True),
        "squat": (Base((0.0, 0.0, 0.74 * height), quat_about_x(math.radians(23))), True),
        "tipping": (Base((0.0, 0.0, 0.9 * height), quat_about_x(math.radians(35))), False),
        "sinking": (Base((0.0, 0.0, 0.6 * height)), False),
        "no base pose": (None, None),
    }
    for name, (base, upright) in postures.items():
        monitors, robot = Monitors(collisions=False), fake()
        robot.base = base
        robot.heartbeat = Grip(grip_closed=True, holding="part-1")
        found = monitors.check(0, {"R1": robot}, None)
        robot.heartbeat = Grip(grip_closed=True, holding="")
        found += monitors.check(STEP_NS, {"R1": robot}, None)
        drops = [f for f in found if f.kind == "grasp_dropped"]
        assert [f.upright for f in drops] == [upright], name
    # other kinds say nothing of it, and their JSON is as before
    fall = FailureEvent("F0001", 0, "R1", "fall", "critical", "fell")
    assert fall.upright is None and b"upright" not in msgspec.json.encode(fall)


def test_a_gripper_empty_after_a_silence_is_no_drop() -> None:
    monitors = Monitors(collisions=False)
    robot = fake()
    robot.heartbeat = Grip(grip_closed=True, holding="part-1")
    found = monitors.check(0, {"R1": robot}, None)
    # 2 s without a heartbeat (a restart): nothing was seen in between
    robot.heartbeat = Grip(grip_closed=True, holding="")
    found += monitors.check(40 * STEP_NS, {"R1": robot}, None)
    assert [f for f in found if f.kind == "grasp_dropped"] == []
    # while heartbeats keep coming, the same change is a drop
    robot.heartbeat = Grip(grip_closed=True, holding="part-2")
    found += monitors.check(41 * STEP_NS, {"R1": robot}, None)
    robot.heartbeat = Grip(grip_closed=True, holding="")
    found += monitors.check(43 * STEP_NS, {"R1": robot}, None)
    assert [f.details.split(":")[0] for f in found if f.kind == "grasp_dropped"] == [
        "dropped part-2"
    ]


# -- end to end ----------------------------------------------------------------------------


def failures_json(path: Path) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "twin", "failures", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, object]] = json.loads(done.stdout)["events"]
    return rows


def test_twin_failures_lists_the_injected_fall_at_its_time(fall_recording: Path) -> None:
    rows = failures_json(fall_recording)
    falls = [r for r in rows if r["kind"] == "fall"]
    assert [r["robot"] for r in falls] == ["T3-04"], rows
    fall = falls[0]
    assert fall["severity"] == "critical" and fall["manufacturer"]
    # seconds from the recording's start, the time zero of the emulator's fault times: the fall
    # is injected at 4 s and takes up to about a second to bring the robot down
    assert FALL_AT_S - CLOCKS_S <= float(str(fall["t_s"])) <= FALL_AT_S + FALL_WITHIN_S, fall


def test_a_lost_grip_in_the_emulator_is_listed_as_a_dropped_grasp(fall_recording: Path) -> None:
    rows = failures_json(fall_recording)
    drops = [r for r in rows if r["kind"] == "grasp_dropped"]
    # T3-01 at bench B4 picks part-1; its grip is first shut after 1 s within its 7 s cycle
    assert [(r["robot"], r["severity"]) for r in drops] == [("T3-01", "error")], rows
    assert "part-1" in str(drops[0]["details"])
    # due from 1 s (or the emulator's start, about 1-2 s after the recording's); the slip waits
    # for an item carried 0.5 s, and the carrying may have begun before the fault was due, so
    # it can come as soon as it is due; the grip shuts for 3.2 s of every 7 s cycle, so it comes
    # at most 3.8 + 0.5 s after (0.1 s of slack for the clocks on either side)
    assert 0.9 <= float(str(drops[0]["t_s"])) <= 7.0, drops
    offline = [
        f for f in detect_offline(open_recording(fall_recording)) if f.kind == "grasp_dropped"
    ]
    assert [f.robot_id for f in offline] == ["T3-01"]
    # it slips while the robot carries it, upright: recorded live and found offline alike
    assert drops[0]["upright"] is True and offline[0].upright is True


def test_offline_detection_finds_the_same_fall_in_the_joint_and_base_channels(
    fall_recording: Path,
) -> None:
    recording = open_recording(fall_recording)
    found = detect_offline(recording)
    falls = [f for f in found if f.kind == "fall"]
    assert [f.robot_id for f in falls] == ["T3-04"]
    zero_ns = start_ns(recording)
    assert zero_ns is not None
    seen_s = (falls[0].stamp_ns - zero_ns) / 1e9
    assert FALL_AT_S - CLOCKS_S <= seen_s <= FALL_AT_S + FALL_WITHIN_S, seen_s
    assert [f for f in found if f.kind == "stale"] == []  # the emulator shut down in order


def test_twin_failures_refuses_a_bad_file_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"not a recording")
    done = subprocess.run(
        [sys.executable, "-m", "twin", "failures", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "not an MCAP file" in done.stderr


def test_a_recording_without_monitors_is_checked_offline(tmp_path: Path) -> None:
    from sync.protocol import BaseState, Kind, encode_payload
    from tests.recordings import T0_NS, hall_messages, received, record

    scene = load_scene()
    messages = hall_messages(scene, 20)
    down = BaseState((1.0, 2.0, 0.2), (0.0, 0.0, 0.0, 1.0), (0, 0, 0), (0, 0, 0), (0, 0, 9.81))
    for k in range(5):  # K1-03 lies on the floor from 1.1 s on
        stamp = T0_NS + 1_100_000_000 + k * STEP_NS
        messages.append(received(Kind.BASE, "K1-03", 100 + k, stamp, encode_payload(down)))
    path = tmp_path / "no-monitors.mcap"
    record(path, scene, messages)
    rows = failures_json(path)
    assert [r["robot"] for r in rows if r["kind"] == "fall"] == ["K1-03"], rows
    # every robot's base was recorded at the same spot: they collide, once per pair
    pairs = [(r["robot"], str(r["details"]).split()[3]) for r in rows if r["kind"] == "collision"]
    assert len(pairs) == len(set(pairs)) >= len(scene.robots) - 1


def test_a_report_far_from_the_twins_prediction_is_one_divergence() -> None:
    monitors, robot = Monitors(collisions=False), fake()
    assert robot.joints is not None
    robot.reported = Liveness.LIVE
    n = len(robot.joints.positions)
    found: list[FailureEvent] = []
    # smooth motion the twin predicts well: 0.5 rad/s on every joint, new sample each check
    for k in range(10):
        t_s = k * STEP_NS / 1e9
        robot.joints = JointSample(np.full(n, 0.5 * t_s), np.full(n, 0.5), np.zeros(n))
        found += monitors.check(k * STEP_NS, {"R1": robot}, None)
    found = [f for f in found if f.kind == "divergence"]  # (limits are not this test's job)
    assert found == []
    # one joint jumps 2 rad in 50 ms, far beyond its speed limit: a divergence, once
    for k in range(10, 20):
        t_s = k * STEP_NS / 1e9
        positions = np.full(n, 0.5 * t_s)
        positions[3] += 2.0 if k >= 12 else 0.0
        robot.joints = JointSample(positions, np.full(n, 0.5), np.zeros(n))
        found += [
            f for f in monitors.check(k * STEP_NS, {"R1": robot}, None) if f.kind == "divergence"
        ]
    assert [(f.kind, f.severity) for f in found] == [("divergence", "error")]
    name = codec_for(robot.model).canonical_names[3]
    assert name in found[0].details and "predicted" in found[0].details
