"""``twin preview --own-feet``: the robot stands on its own feet outside walks.

Real PyBullet runs of the default hall with placo's whole-body solver: nothing holds a standing
robot (support force exactly 0 outside walks), a walk is still carried (support > 0 in it), a
reach within balance passes, the examples meant to pass pass and the others fail for their
reasons, an overreach (20 N*m pulled on a wrench across a bench) topples and fails on balance
where the stabilised base (the default) would have held it up with more than its weight, and the
report and plots say all of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from scenes import load_scene
from scenes.model import Scene
from scenes.tasks import TASKS_DIR, load_task, parse_task_text
from twin.cli.app import app
from twin.preview.checks import MAX_WORK_CONTACT_N
from twin.preview.engine import run_preview
from twin.preview.support import MAX_SUPPORT_OUTSIDE_WALKS
from twin.preview.trials import run_trials


@pytest.fixture(scope="module")
def hall() -> Scene:
    return load_scene()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Preview records in a temporary folder, not the user's."""
    path = tmp_path / "previews"
    monkeypatch.setenv("HALL_TWIN_PREVIEWS", str(path))
    return path


BALANCE_KEYS = {
    "max_support_force_fraction_outside_walks",
    "max_support_force_fraction_in_walks",
    "min_zmp_margin_m",
    "min_com_margin_m",
    "min_planned_com_margin_m",
    "min_planned_cop_margin_m",
    "balance_plan",
}
STAND = "name: stand\nrobot: K1-01\nsteps:\n  - wait: 3 s\n"
WALK = (
    "name: walk_then_stand\nrobot: K1-01\nsteps:\n"
    "  - walk: {to: [6.0, 6.6], yaw: -90 deg}\n  - wait: 1.5 s\n"
)
REACH = (
    "name: reach_within_balance\nrobot: K1-01\nsteps:\n"
    "  - reach: {hand: right, target: {bench: B1, offset: [0, 0.35, 10 cm]}}\n  - wait: 1 s\n"
)
REACH_INTO_BENCH = REACH.replace("10 cm", "5 cm")  # the hand's target 5 cm up: it lands on it


def test_standing_on_its_own_feet_needs_no_support_and_the_hook_is_measured(hall: Scene) -> None:
    task = parse_task_text(STAND, "stand.yaml", hall)
    own = run_preview(task, hall, own_feet=True)
    assert own.passed, own.reasons
    assert own.own_feet
    assert own.max_support_force_fraction_outside_walks == 0.0
    assert own.min_com_margin_m is not None and own.min_com_margin_m > 0.03
    assert own.min_zmp_margin_m is not None and own.min_zmp_margin_m > 0.0
    assert "own feet" in own.report()["gait"]
    # the default run carries the same standing robot: the figure shows how hard
    carried = run_preview(task, hall)
    assert not carried.own_feet
    assert carried.max_support_force_fraction_outside_walks > MAX_SUPPORT_OUTSIDE_WALKS
    assert carried.report()["gait"] == "stabilised base"
    assert own.report()["balance_plan"] == "whole-body (placo)"
    assert carried.report()["balance_plan"] == "carried throughout"


def test_a_walk_is_carried_and_the_stance_after_it_is_not(hall: Scene) -> None:
    result = run_preview(parse_task_text(WALK, "walk.yaml", hall), hall, own_feet=True)
    assert result.passed, result.reasons
    assert result.max_support_force_fraction_in_walks > MAX_SUPPORT_OUTSIDE_WALKS
    assert result.max_support_force_fraction_outside_walks == 0.0
    series = result.balance_series
    t = np.array(series["t_s"])
    support = np.array(series["support_fraction"])
    assert support[t < 1.0].max() > 0.5  # walking: carried
    assert support[t > result.cycle_time_s - 0.5].max() == 0.0  # standing after it: not


def test_a_reach_within_balance_passes_on_its_own_feet(hall: Scene) -> None:
    result = run_preview(parse_task_text(REACH, "reach.yaml", hall), hall, own_feet=True)
    assert result.passed, result.reasons
    assert result.max_support_force_fraction_outside_walks == 0.0
    assert result.max_hand_error_m < 0.05


@pytest.mark.parametrize("own_feet", [True, False], ids=["own-feet", "carried"])
def test_a_hand_driven_into_the_bench_it_reaches_over_is_a_collision(
    hall: Scene, own_feet: bool
) -> None:
    """The hand at work may touch its bench, not press on it: this reach pressed 100 N on
    B1 for a second and passed before the push was judged."""
    task = parse_task_text(REACH_INTO_BENCH, "reach.yaml", hall)
    result = run_preview(task, hall, own_feet=own_feet)
    assert not result.passed
    first = result.reasons[0]
    assert first.kind == "collision" and first.step == 0
    assert "r_hand_link pushes bench:B1 with" in first.detail
    assert result.max_work_contact_force_n > MAX_WORK_CONTACT_N
    assert result.report()["max_work_contact_on"] == "robot:K1-01/r_hand_link on bench:B1"
    # 5 cm higher the hand clears the bench: nothing pressed at all
    clear = run_preview(parse_task_text(REACH, "reach.yaml", hall), hall, own_feet=own_feet)
    assert clear.passed, clear.reasons
    assert clear.max_work_contact_force_n == 0.0


def test_overreach_topples_on_its_own_feet_and_only_a_support_holds_it(hall: Scene) -> None:
    task = load_task(TASKS_DIR / "overreach_topples.yaml", hall)
    own = run_preview(task, hall, own_feet=True)
    assert not own.passed
    # it topples at its first pull: a balance reason in the torque step (the hand may be
    # judged a few millimetres off the bolt on arrival, just before)
    torque = next(i for i, step in enumerate(task.steps) if step.torque is not None)
    balance = [r for r in own.reasons if r.kind == "balance"]
    assert balance, own.reasons
    assert balance[0].step == torque and "outside the support polygon" in balance[0].detail
    assert all(r.step == torque for r in own.reasons), own.reasons  # nothing before it fails
    assert own.min_com_margin_m is not None and own.min_com_margin_m < 0.0
    carried = run_preview(task, hall)
    assert carried.passed, carried.reasons  # the hidden support holds it...
    assert carried.max_support_force_fraction_outside_walks > 1.0  # ...with over its weight


@pytest.mark.parametrize("name", ["torque_wrench", "sensor_calibration", "walk_to_bench"])
def test_the_examples_meant_to_pass_pass_on_their_own_feet(hall: Scene, name: str) -> None:
    task = load_task(TASKS_DIR / f"{name}.yaml", hall)
    result = run_preview(task, hall, own_feet=True, keep_series=False)
    assert result.passed, result.reasons
    assert result.own_feet
    assert result.max_support_force_fraction_outside_walks == 0.0
    assert result.max_support_force_fraction_in_walks > MAX_SUPPORT_OUTSIDE_WALKS  # walks carried
    if name == "torque_wrench":  # its strokes' push leaves the centre of pressure well inside
        assert result.min_planned_cop_margin_m is not None
        assert result.min_planned_cop_margin_m > 0.05
    else:
        assert result.min_planned_cop_margin_m is None  # no strokes


def test_a_push_no_pose_can_stand_against_fails_on_balance_before_it_runs(hall: Scene) -> None:
    """40 N*m on the wrench: the stroke's push would move the centre of pressure about 22 cm
    ahead of the CoM, past the toes in any pose the plan can take: the plan itself fails on
    balance, first, whatever the run then does."""
    text = (TASKS_DIR / "torque_wrench.yaml").read_text(encoding="utf-8")
    assert text.count("torque: 10 N*m") == 1
    task = parse_task_text(text.replace("torque: 10 N*m", "torque: 40 N*m"), "t40.yaml", hall)
    result = run_preview(task, hall, own_feet=True, keep_series=False)
    assert not result.passed
    first = result.reasons[0]
    assert first.kind == "balance" and "centre of pressure" in first.detail, result.reasons
    assert result.min_planned_cop_margin_m is not None and result.min_planned_cop_margin_m < 0.0


@pytest.mark.parametrize(
    ("name", "kind"),
    [("reach_too_far", "reach"), ("crane_collision", "clearance"), ("heavy_lift", "effort")],
)
def test_the_failing_examples_fail_for_their_reasons_on_their_own_feet(
    hall: Scene, name: str, kind: str
) -> None:
    task = load_task(TASKS_DIR / f"{name}.yaml", hall)
    result = run_preview(task, hall, own_feet=True, keep_series=False)
    assert not result.passed
    assert result.reasons[0].kind == kind, result.reasons


def test_cli_own_feet_report_keys_and_balance_plot(tmp_path: Path, store: Path) -> None:
    task = tmp_path / "overreach_topples.yaml"
    task.write_bytes((TASKS_DIR / "overreach_topples.yaml").read_bytes())
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app, ["preview", str(task), "--own-feet", "--no-lessons", "--json", "--report", str(out)]
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert set(report) >= BALANCE_KEYS
    assert report["passed"] is False
    assert "balance" in {reason["kind"] for reason in report["reasons"]}
    assert report["max_support_force_fraction_outside_walks"] == 0.0
    assert report["min_com_margin_m"] < 0.0
    image = np.asarray(Image.open(out / "balance.png").convert("L"))
    assert str(out / "balance.png") in report["files"]
    assert image.std() > 10  # drawn, not blank


@pytest.mark.parametrize("jobs", [1, 2])
def test_own_feet_trials_are_seeded_and_parallel_equals_serial(hall: Scene, jobs: int) -> None:
    task = parse_task_text(STAND, "stand.yaml", hall)
    first = run_trials(task, hall, 2, seed=7, jobs=jobs, own_feet=True)
    again = run_trials(task, hall, 2, seed=7, jobs=1, own_feet=True)
    assert [(o.index, o.seed, o.passed, o.kinds) for o in first] == [
        (o.index, o.seed, o.passed, o.kinds) for o in again
    ]
    assert all(o.passed for o in first), first
