"""The hall emulator's physics: robots at their tasks, falls, overrides, cranes, determinism."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import get_args

import numpy as np
import pytest

from robots import get_model
from robots.bullet import pb
from robots.vendors import SPECS
from scenes import load_scene
from scenes.model import Scene, TaskKind
from twin import UnknownNameError
from twin.emulator import CraneSample, EmulatedHall, Perturbation, RobotSample
from twin.emulator.motion import LegGeometry, RobotMotion, task_period_s
from twin.emulator.plans import CranePlan, WalkPath, inside_rectangle, plan_walks

RUN_S = 5.0
SAMPLE_EVERY = 4  # physics steps between samples (60 Hz)
BLEND_IN_S = 1.0


@dataclass
class Run:
    """The default hall stepped for RUN_S, sampled every SAMPLE_EVERY steps."""

    scene: Scene
    time_step_s: float
    robots: dict[str, list[RobotSample]] = field(default_factory=dict)
    targets: dict[str, list[np.ndarray]] = field(default_factory=dict)
    wrist_load: dict[str, list[float]] = field(default_factory=dict)
    cranes: dict[str, list[CraneSample]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def scene() -> Scene:
    return load_scene()


@pytest.fixture(scope="module")
def run(scene: Scene) -> Iterator[Run]:
    with EmulatedHall(scene, seed=3) as hall:
        out = Run(scene, hall.time_step_s)
        ids = hall.robot_ids
        for _ in range(round(RUN_S / hall.time_step_s / SAMPLE_EVERY)):
            hall.step(SAMPLE_EVERY)
            for rid in ids:
                out.robots.setdefault(rid, []).append(hall.sample(rid))
                out.targets.setdefault(rid, []).append(hall.joint_targets(rid))
                out.wrist_load.setdefault(rid, []).append(hall.motion_target(rid).wrist_load)
            for crane in scene.cranes:
                out.cranes.setdefault(crane.id, []).append(hall.crane_sample(crane.id))
        assert hall.sim_time_s == pytest.approx(RUN_S)
        yield out


def robots_doing(scene: Scene, task: str) -> list[str]:
    found = [r.id for r in scene.robots if r.task == task]
    assert found, f"the default hall has no {task} robot"
    return found


def wire_index(scene: Scene, robot_id: str, joint: str) -> int:
    profile = get_model(scene.robot(robot_id).model).profile
    return profile.joint_names.index(profile.vendor_name(joint))


def test_default_hall_runs_five_seconds_and_nobody_falls(run: Run) -> None:
    squatters = set(robots_doing(run.scene, "squats"))
    for rid, samples in run.robots.items():
        model = get_model(run.scene.robot(rid).model)
        assert len(samples) == 300
        assert not any(s.fallen for s in samples), rid
        heights = np.array([s.base_position_m[2] for s in samples])
        if rid in squatters:
            assert heights.max() == pytest.approx(model.base_height_m, abs=0.1), rid
            assert heights.min() > 0.5 * model.base_height_m, rid
        else:
            assert np.abs(heights - model.base_height_m).max() < 0.1, rid
        assert all(np.isfinite(s.positions).all() and np.isfinite(s.efforts).all() for s in samples)


def test_walking_robots_travel_inside_the_floor_and_clear_of_benches(run: Run) -> None:
    size_x, size_y = run.scene.floor.size
    for rid in robots_doing(run.scene, "walking"):
        xy = np.array([s.base_position_m[:2] for s in run.robots[rid]])
        start = np.array(run.scene.station(run.scene.robot(rid).station).pose.xyz[:2])
        assert np.linalg.norm(xy - start, axis=1).max() > 1.0, rid
        assert (xy[:, 0] > 0.3).all() and (xy[:, 0] < size_x - 0.3).all(), rid
        assert (xy[:, 1] > 0.3).all() and (xy[:, 1] < size_y - 0.3).all(), rid
        for bench in run.scene.benches:
            centre = (bench.pose.xyz[0], bench.pose.xyz[1])
            inside = [
                inside_rectangle((x, y), centre, bench.size, bench.pose.yaw_rad, margin_m=0.3)
                for x, y in xy
            ]
            assert not any(inside), (rid, bench.id)
        # the heading follows the lane: the pelvis faces the way it walks
        velocity = np.array([s.base_linear_velocity_m_s[:2] for s in run.robots[rid]])
        fast = np.linalg.norm(velocity, axis=1) > 0.3
        assert fast.sum() > 60, rid
        for sample, v, is_fast in zip(run.robots[rid], velocity, fast, strict=True):
            if not is_fast:
                continue
            yaw = pb.getEulerFromQuaternion(sample.base_orientation_xyzw)[2]
            travel = math.atan2(v[1], v[0])
            assert abs(math.remainder(yaw - travel, math.tau)) < 0.3, rid


def test_squatting_robot_bends_its_knees_and_lowers_its_pelvis(run: Run) -> None:
    for rid in robots_doing(run.scene, "squats"):
        samples = [s for s in run.robots[rid] if s.sim_time_s > BLEND_IN_S]
        knee = wire_index(run.scene, rid, "left_knee")
        assert max(s.positions[knee] for s in samples) > 0.9, rid
        heights = [s.base_position_m[2] for s in samples]
        assert max(heights) - min(heights) > 0.15, rid


def test_joints_track_their_motion_targets(run: Run) -> None:
    for rid, samples in run.robots.items():
        errors = np.array(
            [
                np.abs(s.positions - t)
                for s, t in zip(samples, run.targets[rid], strict=True)
                if s.sim_time_s > BLEND_IN_S
            ]
        )
        assert np.median(errors) < 0.05, rid
    for rid in robots_doing(run.scene, "torque_wrench"):
        errors = np.array(
            [
                np.abs(s.positions - t)
                for s, t in zip(run.robots[rid], run.targets[rid], strict=True)
            ]
        )
        assert np.median(errors) < 0.05, rid
        assert np.median(errors.max(axis=1)) < 0.1, rid


def test_torque_wrench_wrist_works_harder_while_turning(run: Run) -> None:
    for rid in robots_doing(run.scene, "torque_wrench"):
        wrist = wire_index(run.scene, rid, "right_wrist_yaw")
        efforts = np.array([abs(s.efforts[wrist]) for s in run.robots[rid]])
        load = np.array(run.wrist_load[rid])
        assert (load > 0.9).sum() > 20 and (load < 0.01).sum() > 20, "both phases sampled"
        effort_limit = get_model(run.scene.robot(rid).model).joint("right_wrist_yaw").effort_limit
        assert np.median(efforts[load > 0.9]) > 0.3 * effort_limit
        assert np.median(efforts[load > 0.9]) > 5.0 * np.median(efforts[load < 0.01])


def test_imu_reads_gravity_reaction_and_the_gait(run: Run) -> None:
    walkers = set(robots_doing(run.scene, "walking"))
    for rid, samples in run.robots.items():
        late = [s for s in samples if s.sim_time_s > BLEND_IN_S]
        acceleration = np.array([s.base_linear_acceleration_m_s2 for s in late])
        assert acceleration.mean(axis=0) == pytest.approx((0.0, 0.0, 9.81), abs=0.5), rid
        gyro = np.array([s.base_angular_velocity_rad_s for s in late])
        assert np.abs(gyro).max() < 5.0, rid
        if rid not in walkers:
            assert np.median(np.linalg.norm(acceleration - (0.0, 0.0, 9.81), axis=1)) < 1.0


def test_samples_are_si_in_the_vendor_wire_order(scene: Scene) -> None:
    with EmulatedHall(scene) as hall:
        hall.step(360)
        for robot in scene.robots:
            model = get_model(robot.model)
            sample = hall.sample(robot.id)
            assert sample.robot_id == robot.id and sample.sim_time_s == pytest.approx(1.5)
            names = model.profile.joint_names
            assert sample.positions.shape == sample.velocities.shape == (len(names),)
            assert sample.efforts.shape == (len(names),)
            truth = hall.world.joint_positions(robot.id, canonical=False)  # radians from PyBullet
            assert sample.positions.tolist() == pytest.approx([truth[n] for n in names], abs=1e-9)
            # targets in the same order: a robot mid-task has several joints well away from zero
            targets = hall.joint_targets(robot.id)
            assert np.median(np.abs(sample.positions - targets)) < 0.05, robot.id
            assert np.abs(sample.positions).max() < 2.0 * math.pi  # never degrees
        orca = next(r.id for r in scene.robots if r.model == "orca_h2")
        sample = hall.sample(orca)
        assert get_model("orca_h2").profile.position_unit == "deg"  # wire unit, not ours
        assert np.abs(sample.positions).max() < 3.2


def test_injected_fall_brings_the_robot_down_and_leaves_the_others_standing(scene: Scene) -> None:
    victim = robots_doing(scene, "walking")[0]
    with EmulatedHall(scene, seed=1) as hall:
        hall.step(240)
        assert not any(hall.sample(r).fallen for r in hall.robot_ids)
        hall.inject_fall(victim)
        fell_after_s = None
        for i in range(1, 3 * 60 + 1):
            hall.step(4)
            if hall.sample(victim).fallen:
                fell_after_s = i * 4 * hall.time_step_s
                break
        assert fell_after_s is not None and fell_after_s <= 3.0
        hall.step(480)  # it stays down
        assert hall.sample(victim).fallen
        assert hall.sample(victim).base_position_m[2] < 0.5
        others = [r for r in hall.robot_ids if r != victim]
        assert not any(hall.sample(r).fallen for r in others)
        # helped up: standing again and stays up, and it can fall again later
        hall.stand_up(victim)
        hall.step(480)
        standing = get_model(scene.robot(victim).model).base_height_m
        assert not hall.sample(victim).fallen
        assert hall.sample(victim).base_position_m[2] > 0.8 * standing
        hall.inject_fall(victim)
        hall.step(480)
        assert hall.sample(victim).fallen


def test_same_seed_same_samples_and_seeds_perturb_masses(scene: Scene) -> None:
    def run_for(seed: int, perturbation: Perturbation) -> tuple[EmulatedHall, list[RobotSample]]:
        hall = EmulatedHall(scene, seed=seed, perturbation=perturbation)
        hall.step(240)
        return hall, [hall.sample(r) for r in hall.robot_ids]

    a, samples_a = run_for(7, Perturbation())
    b, samples_b = run_for(7, Perturbation())
    c, _ = run_for(8, Perturbation())
    n, samples_n = run_for(7, Perturbation.none())
    try:
        for x, y in zip(samples_a, samples_b, strict=True):
            assert np.array_equal(x.positions, y.positions)
            assert np.array_equal(x.efforts, y.efforts)
            assert x.base_position_m == y.base_position_m
            assert x.base_orientation_xyzw == y.base_orientation_xyzw
        rid = scene.robots[0].id
        assert np.array_equal(a.link_masses_kg(rid), b.link_masses_kg(rid))
        assert not np.allclose(a.link_masses_kg(rid), c.link_masses_kg(rid))
        nominal = n.link_masses_kg(rid)
        assert not np.allclose(a.link_masses_kg(rid), nominal)
        assert a.link_masses_kg(rid).sum() == pytest.approx(nominal.sum(), rel=0.1)
        with EmulatedHall(scene, seed=99, perturbation=Perturbation.none()) as other_seed:
            assert np.array_equal(other_seed.link_masses_kg(rid), nominal)
        assert any(
            not np.array_equal(x.positions, y.positions)
            for x, y in zip(samples_a, samples_n, strict=True)
        ), "the perturbation changes the physics"
    finally:
        for hall in (a, b, c, n):
            hall.close()


def test_crane_moves_within_travel_at_most_at_rated_speeds(run: Run) -> None:
    for crane in run.scene.cranes:
        samples = run.cranes[crane.id]
        assert any(s.moving for s in samples)
        positions = np.array([(s.bridge_m, s.trolley_m, s.hoist_m) for s in samples])
        dt = SAMPLE_EVERY * run.time_step_s
        speeds = np.abs(np.diff(positions, axis=0)) / dt
        axes = (crane.bridge, crane.trolley, crane.hoist)
        for i, axis in enumerate(axes):
            assert positions[:, i].min() >= axis.travel[0] - 1e-3
            assert positions[:, i].max() <= axis.travel[1] + 1e-3
            assert speeds[:, i].max() <= axis.speed * 1.01
        assert np.linalg.norm(positions[-1] - positions[0]) > 0.5


def test_crane_plan_loop_stays_within_travel_and_speed(scene: Scene) -> None:
    for crane in scene.cranes:
        plan = CranePlan(crane)
        axes = (crane.bridge, crane.trolley, crane.hoist)
        home = (crane.home.bridge, crane.home.trolley, crane.home.hoist)
        assert plan.at(0.0).position_m == pytest.approx(home)
        pauses = 0
        was_moving = True
        for t in np.arange(0.0, plan.lead_s + 2 * plan.loop_s, 0.05):
            state = plan.at(float(t))
            for i, axis in enumerate(axes):
                assert axis.travel[0] <= state.position_m[i] <= axis.travel[1]
                assert abs(state.velocity_m_s[i]) <= axis.speed
            moving = any(abs(v) > 1e-6 for v in state.velocity_m_s)
            pauses += was_moving and not moving
            was_moving = moving
        assert pauses >= 2 * len(plan.waypoints)
        # with the load, the hook stays high enough to clear the robots
        load = crane.load.size[2] if crane.load is not None else 0.0
        assert min(w[2] for w in plan.waypoints) - 0.4 - load >= 2.0


def test_joint_targets_override_the_task_loop_until_cleared(scene: Scene) -> None:
    rid = robots_doing(scene, "walking")[-1]
    model = get_model(scene.robot(rid).model)
    elbow = wire_index(scene, rid, "left_elbow")
    roll = wire_index(scene, rid, "right_shoulder_roll")
    with EmulatedHall(scene) as hall:
        hall.step(360)
        with pytest.raises(UnknownNameError):
            hall.set_joint_targets(rid, {"left_elbow": -1.4, "left_tail": 0.3})
        with pytest.raises(ValueError, match="non-finite"):
            hall.set_joint_targets(rid, {"left_elbow": math.nan})
        assert hall.joint_targets(rid)[elbow] == pytest.approx(-0.4)  # nothing applied
        vendor_roll = model.profile.vendor_name("right_shoulder_roll")
        hall.set_joint_targets(rid, {"left_elbow": -1.4, vendor_roll: -0.5})
        start = np.array(hall.sample(rid).base_position_m)
        hall.step(240)
        sample = hall.sample(rid)
        assert sample.positions[elbow] == pytest.approx(-1.4, abs=0.05)
        assert sample.positions[roll] == pytest.approx(-0.5, abs=0.05)
        assert hall.joint_targets(rid)[elbow] == pytest.approx(-1.4)
        assert np.linalg.norm(np.array(sample.base_position_m) - start) < 0.05  # holds still
        hall.set_joint_targets(rid, {"left_elbow": -9.0})  # clipped into the limits
        hall.step(2)  # motors take new targets at the next control tick
        assert hall.joint_targets(rid)[elbow] == pytest.approx(
            model.joint("left_elbow").lower, abs=0.05
        )
        hall.clear_joint_targets(rid)
        hall.step(360)
        sample = hall.sample(rid)
        assert sample.positions[elbow] == pytest.approx(-0.4, abs=0.05)  # the gait's elbow
        assert not sample.fallen
        hall.step(240)
        moved = np.linalg.norm(np.array(hall.sample(rid).base_position_m) - sample.base_position_m)
        assert moved > 0.3  # walking again


def test_unknown_robot_and_crane_are_refused(scene: Scene) -> None:
    with EmulatedHall(scene) as hall:
        with pytest.raises(UnknownNameError, match="no robot 'R2-D2'"):
            hall.sample("R2-D2")
        with pytest.raises(UnknownNameError, match="no crane 'C9'"):
            hall.crane_sample("C9")


def test_walking_lanes_are_long_clear_and_apart(scene: Scene) -> None:
    lanes = plan_walks(scene)
    assert set(lanes) == set(robots_doing(scene, "walking"))
    ends = []
    for lane in lanes.values():
        assert lane.length_m == pytest.approx(4.0)
        assert lane.cruise_m_s == pytest.approx(0.5)
        far = lane.at(lane.leg_s)  # at the far end, about to turn
        ends.append(((far.x_m, far.y_m), lane.start))
        assert lane.at(lane.leg_s + lane.turn_s).yaw_rad == pytest.approx(
            lane.heading_rad + math.pi
        )
        assert lane.at(lane.period_s).x_m == pytest.approx(lane.start[0])
    (a_end, a_start), (b_end, b_start) = ends
    for p in (a_end, a_start):
        for q in (b_end, b_start):
            assert math.dist(p, q) > 2.0
    boxed = scene.model_copy(update={"floor": scene.floor.model_copy(update={"size": (3.0, 3.0)})})
    assert all(lane.length_m < 1.5 for lane in plan_walks(boxed).values())


@pytest.mark.parametrize("model_name", ["kestrel_k1", "orca_h2", "tessel_t3"])
def test_every_task_keeps_targets_in_limits_and_the_pelvis_over_the_feet(model_name: str) -> None:
    model = get_model(model_name)
    spec = SPECS[model_name]
    legs = LegGeometry(
        pelvis_to_hip_m=spec.length("hip_drop") + 0.5 * spec.length("pelvis_height"),
        thigh_m=spec.length("thigh"),
        shank_m=spec.length("shank"),
        ankle_height_m=spec.length("ankle_height"),
    )
    assert sum(vars(legs).values()) == pytest.approx(model.base_height_m, abs=1e-6)
    lower = np.array([j.lower for j in model.joints if j.kind != "spherical"])
    upper = np.array([j.upper for j in model.joints if j.kind != "spherical"])
    walk = WalkPath((5.0, 5.0), 0.0, 4.0)
    for task in get_args(TaskKind):
        motion = RobotMotion(model, task, (5.0, 5.0), 0.0, legs, walk=walk, phase_offset_s=0.7)
        heights = []
        for t in np.arange(0.0, 2.0 + task_period_s(task, walk), 0.05):
            target = motion.at(float(t))
            assert np.isfinite(target.joint_targets).all()
            assert (target.joint_targets >= lower).all() and (target.joint_targets <= upper).all()
            assert 0.0 <= target.wrist_load <= 1.0
            heights.append(target.pelvis_xyz_m[2])
            assert math.dist(target.feet_xy_m, target.pelvis_xyz_m[:2]) < 0.25, task
        assert max(heights) <= model.base_height_m + 1e-9, task
        drop = model.base_height_m - min(heights)
        assert drop > 0.15 if task == "squats" else drop < 0.08, task


def test_the_motion_phase_follows_the_loop_and_the_grip() -> None:
    from twin.emulator.motion import CHANNELS
    from twin.emulator.tasks import PHASES

    model = get_model("orca_h2")
    motion = RobotMotion(model, "pick_and_place", (5.0, 5.0), 0.0, None, phase_offset_s=0.0)
    period_s = task_period_s("pick_and_place")
    grip = CHANNELS.index("grip")
    for t in np.arange(0.0, 2 * period_s, 0.05):
        phase = motion.phase(float(t))
        closed = motion_grip(motion, float(t), grip)
        # the item is carried exactly while the grip is (nearly) closed after grasping
        if phase == "carry":
            assert closed > 0.9, (t, closed)
        if phase in ("reach", "return"):
            assert closed < 0.1, (t, closed)
    assert motion.phase(-1.0) == ""  # before the task starts
    assert {motion.phase(float(t)) for t in np.arange(0, period_s, 0.05)} == {
        name for _, name in PHASES["pick_and_place"]
    }
    lane = WalkPath((5.0, 5.0), 0.0, 4.0)
    walker = RobotMotion(model, "walking", (5.0, 5.0), 0.0, None, walk=lane)
    assert walker.phase(3.0) == "walk"


def motion_grip(motion: RobotMotion, t_s: float, channel: int) -> float:
    """The task table's grip channel (0 open, 1 closed) where the motion is at ``t_s``."""
    from twin.emulator.motion import _TABLES

    return float(_TABLES[motion.task].at(t_s + motion.phase_offset_s)[channel])
