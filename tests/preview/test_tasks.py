"""Task files: examples load, bad files get precise FILE:LINE messages, the compiled plan keeps
every joint target inside the model's limits and names only joints the model has."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from robots import get_model
from scenes import load_scene
from scenes.model import Scene
from scenes.tasks import TASKS_DIR, TaskError, load_task, parse_task_text
from twin.preview.compile import compile_plan, compile_task


@pytest.fixture(scope="module")
def hall() -> Scene:
    return load_scene()


def problems(text: str, hall: Scene) -> list[str]:
    with pytest.raises(TaskError) as caught:
        parse_task_text(textwrap.dedent(text), "bad.yaml", hall)
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize("path", sorted(TASKS_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_load(path: Path, hall: Scene) -> None:
    task = load_task(path, hall)
    assert task.name == path.stem
    assert task.robot in {r.id for r in hall.robots}


def test_unknown_key_did_you_mean(hall: Scene) -> None:
    text = """\
        robot: K1-01
        limits: {min_clearence: 2 cm}
        steps:
          - wait: 1 s
          - jump: {}
    """
    assert problems(text, hall) == [
        "bad.yaml:2: limits.min_clearence: unknown key 'min_clearence' (did you mean "
        "'min_clearance'?)",
        "bad.yaml:5: steps[1].jump: unknown key 'jump' (allowed: walk, squat, reach, grasp, "
        "place, torque, calibrate, wait)",
    ]


def test_scene_references_and_rating(hall: Scene) -> None:
    text = """\
        robot: K1-01
        steps:
          - walk: {to: S9}
          - grasp: {item: bolt-fixture-1}
          - torque: {wrench: wrench-1, torque: 130 N*m}
          - calibrate: {array: wrench-1}
    """
    assert problems(text, hall) == [
        "bad.yaml:3: steps[0].walk.to: unknown station 'S9' (known: S1, S2, S3, S4, S5, S6, "
        "S7, S8)",
        "bad.yaml:4: steps[1].grasp.item: item 'bolt-fixture-1' is fixed to its bench; it "
        "cannot be grasped",
        "bad.yaml:5: steps[2].torque.torque: 130 N*m is above the rating of 'wrench-1' (120 N*m)",
        "bad.yaml:5: steps[2].torque.wrench: wrench 'wrench-1' is not in hand here; grasp it first",
        "bad.yaml:6: steps[3].calibrate.array: item 'wrench-1' is a torque_wrench, not a "
        "sensor_array",
    ]


def test_unknown_robot_units_and_crane(hall: Scene) -> None:
    text = """\
        robot: K1-10
        steps:
          - wait: 3 deg
    """
    assert problems(text, hall) == [
        "bad.yaml:3: steps[0].wait: wrong unit 'deg' (a unit of angle); a duration takes s, ms, min"
    ]
    text = """\
        robot: K1-10
        steps:
          - wait: 3 s
        crane:
          id: C1
          path:
            - {at: 1 s, bridge: 24, trolley: 14, hoist: 5.5}
            - {at: 3 s, bridge: 30, trolley: 14, hoist: 5.5}
            - {at: 60 s, bridge: 30, trolley: 14, hoist: 9}
    """
    assert problems(text, hall) == [
        "bad.yaml:1: robot: unknown robot 'K1-10' (did you mean 'K1-05'?)",
        "bad.yaml:8: crane.path[1].bridge: reaching 30 m by 3 s needs 3 m/s; crane C1's bridge "
        "is rated 0.6 m/s",
        "bad.yaml:9: crane.path[2].hoist: 9 m is outside crane C1's hoist travel 1..7 m",
    ]


def test_missing_file_and_not_a_mapping(hall: Scene, tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="no such file"):
        load_task(tmp_path / "none.yaml", hall)
    assert problems("- 1\n", hall) == ["bad.yaml:1: a task is a mapping of keys, got a list"]


@pytest.mark.parametrize("path", sorted(TASKS_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_plans_stay_inside_the_joint_limits(path: Path, hall: Scene) -> None:
    task = load_task(path, hall)
    plan = compile_plan(task, hall)
    model = get_model(hall.robot(task.robot).model)
    assert plan.robot == task.robot and plan.frames
    times = [f.t_s for f in plan.frames]
    assert times == sorted(times)
    for frame in plan.frames:
        for name, value in frame.joints_rad.items():
            joint = model.joint(name)  # KeyError: a joint the model lacks
            assert math.isfinite(value)
            assert joint.lower <= value <= joint.upper, (path.name, frame.t_s, name, value)


def test_reach_too_far_has_an_ik_residual_and_the_others_reach(hall: Scene) -> None:
    far = compile_task(load_task(TASKS_DIR / "reach_too_far.yaml", hall), hall)
    assert max(h.residual_m for h in far.hands) > 0.3
    wrench = compile_task(load_task(TASKS_DIR / "torque_wrench.yaml", hall), hall)
    assert all(h.reached for h in wrench.hands)
    assert [g.item for g in wrench.grasps] == ["wrench-1"]
    assert wrench.loads and all(load.force_n > 0 for load in wrench.loads)


def test_hostile_nesting_is_one_problem_not_a_crash(hall: Scene) -> None:
    with pytest.raises(TaskError) as caught:
        parse_task_text("[" * 5000 + "]" * 5000, "deep.yaml", hall)
    assert [str(p) for p in caught.value.problems] == ["deep.yaml: YAML nested too deeply"]
