"""Robustness trials: reproducible with a seed, the same in parallel as in series, a Wilson
interval, the same outcomes on a local Ray (a dev dependency), and a clear message for --ray
where Ray is missing."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scenes import load_scene
from scenes.model import Scene
from scenes.tasks import parse_task_text
from twin.preview.result import Variation
from twin.preview.trials import (
    run_trials,
    summary,
    trial_seed,
    trial_variation,
    wilson_interval,
)

SQUAT = textwrap.dedent(
    """\
    robot: T3-04
    steps:
      - squat: {count: 1, depth: 0.6 rad, period: 2 s}
    """
)


@pytest.fixture(scope="module")
def hall() -> Scene:
    return load_scene()


def test_wilson_interval() -> None:
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and 0.27 < high < 0.28
    low, high = wilson_interval(10, 10)
    assert 0.72 < low < 0.73 and high == pytest.approx(1.0)
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)


def test_seeded_trials_repeat_and_parallel_matches_serial(hall: Scene) -> None:
    task = parse_task_text(SQUAT, "squat.yaml", hall)
    first = run_trials(task, hall, 3, seed=11, jobs=1)
    again = run_trials(task, hall, 3, seed=11, jobs=1)
    parallel = run_trials(task, hall, 3, seed=11, jobs=2)
    assert first == again == parallel
    assert [o.index for o in first] == [0, 1, 2]
    # the timing perturbation really varies between trials
    assert len({o.cycle_time_s for o in first}) == 3
    other = run_trials(task, hall, 3, seed=12, jobs=1)
    assert [o.seed for o in other] != [o.seed for o in first]
    report = summary(first, 11)
    assert report["trials"] == 3 and 0.0 <= report["success_rate"] <= 1.0
    low, high = report["success_rate_95"]
    assert low <= report["success_rate"] <= high


def test_ray_without_ray_is_one_clear_line(tmp_path: Path) -> None:
    task = tmp_path / "squat.yaml"
    task.write_text(SQUAT, encoding="utf-8")
    # a Python where `import ray` fails, as on a machine without the optional dependency
    without_ray = (
        "import sys; sys.modules['ray'] = None; from twin.cli import main; "
        f"sys.argv = ['twin', 'preview', {str(task)!r}, '--trials', '2', '--ray', 'local']; "
        "main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", without_ray], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stderr
    assert "--ray needs Ray" in result.stderr and "Traceback" not in result.stderr


def test_ray_local_gives_the_same_outcomes_as_local_processes(hall: Scene) -> None:
    task = parse_task_text(SQUAT, "squat.yaml", hall)
    on_ray = run_trials(task, hall, 2, seed=11, ray_address="local")
    assert on_ray == run_trials(task, hall, 2, seed=11, jobs=1)


def test_lessons_conditions_are_spread_over_the_trials_and_runners_agree(hall: Scene) -> None:
    task = parse_task_text(SQUAT, "squat.yaml", hall)
    conditions = [
        {"push_delta_v_m_s": 0.4, "lesson": "L0007"},
        {"grip_scale": 0.5, "lesson": "L0008"},
    ]
    variations = [trial_variation(11, i, conditions) for i in range(6)]
    assert [v.lesson for v in variations] == [None, "L0007", "L0008"] * 2
    assert variations[1] == dataclasses.replace(
        Variation.trial(trial_seed(11, 1)), push_delta_v_m_s=0.4, lesson="L0007"
    )
    assert variations[0] == Variation.trial(trial_seed(11, 0))  # the random spread is kept
    serial = run_trials(task, hall, 3, seed=11, jobs=1, conditions=conditions)
    parallel = run_trials(task, hall, 3, seed=11, jobs=2, conditions=conditions)
    assert serial == parallel
    assert [o.lesson for o in serial] == [None, "L0007", "L0008"]
    lessons = summary(serial, 11)["lessons"]
    assert lessons == {
        "L0007": {"trials": 1, "passed": int(serial[1].passed)},
        "L0008": {"trials": 1, "passed": int(serial[2].passed)},
    }
