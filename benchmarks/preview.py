"""How fast a preview runs: the torque-wrench task at 240 Hz beside raw PyBullet, and trials.

Usage: ``python benchmarks/preview.py [--trials N] [--jobs J] [--repeats R] [--carried]
[--no-prediction] [--json]``.

* ``x_realtime``: simulated seconds per wall second of ``run_preview`` on
  ``scenes/tasks/torque_wrench.yaml`` as ``twin preview`` runs it, the robot on its own feet
  outside walks (controllers, the stance's placo solve every tick, crane, every check; compile
  excluded), the median of ``--repeats`` runs; ``carried_x_realtime`` the same carried
  throughout by the stabilised base (``twin preview --carried``);
* ``raw_pybullet_x_realtime``, the baseline from the same run: the same preview hall (same
  bodies, same solver settings) stepped for the same simulated time with no controllers and no
  checks;
* ``x_realtime_over_raw`` and ``carried_x_realtime_over_raw``: what controllers and checks
  leave of the engine's speed (target >= 0.8);
* ``trials_per_min``: ``--trials`` robustness trials (default 100) on ``--jobs`` local processes
  (default: every core), wall time including process start-up, and ``trials_per_min_1_job``
  the same trials on one process (``jobs_speedup``: target >= 1.7 with 2 jobs);
* ``prediction``: for each example task, the preview against what the emulated robot did when
  the task was dispatched to it (cycle time %, peak effort %, trajectory), from
  :mod:`benchmarks.prediction`, run after the timings (its twin and emulator would disturb
  them); ``--no-prediction`` leaves it out.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import machine_info
from benchmarks.prediction import example_tasks
from benchmarks.prediction import measure as measure_prediction
from scenes import load_scene
from scenes.tasks import TASKS_DIR, load_task
from twin.preview.compile import compile_task
from twin.preview.engine import TIME_STEP_S, run_preview
from twin.preview.hall import PreviewHall
from twin.preview.trials import run_trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--carried", action="store_true", help="trials carried (not own feet)")
    parser.add_argument(
        "--no-prediction", action="store_true", help="leave out the examples' prediction errors"
    )
    parser.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    args = parser.parse_args()

    scene = load_scene()
    task = load_task(TASKS_DIR / "torque_wrench.yaml", scene)
    compiled = compile_task(task, scene, own_feet=True)
    runs = [
        run_preview(task, scene, compiled=compiled, keep_series=False) for _ in range(args.repeats)
    ]
    carried_compiled = compile_task(task, scene, own_feet=False)
    carried_runs = [
        run_preview(task, scene, compiled=carried_compiled, keep_series=False)
        for _ in range(args.repeats)
    ]
    simulated_s = runs[0].simulated_s
    first = compiled.plan.at(0.0, compiled.rest_rad)
    raw = []
    for _ in range(args.repeats):
        with PreviewHall(
            scene, task.robot, (first.base_xy_yaw[0], first.base_xy_yaw[1], 0.95),
            first.base_xy_yaw[2], 0.0, first.joints_rad, time_step_s=TIME_STEP_S,
        ) as hall:  # fmt: skip
            steps = math.ceil(simulated_s / TIME_STEP_S)
            started = time.perf_counter()
            for _ in range(steps):
                hall.step()
            raw.append(simulated_s / (time.perf_counter() - started))
    started = time.perf_counter()
    outcomes = run_trials(
        task, scene, args.trials, seed=0, jobs=args.jobs, own_feet=not args.carried
    )
    trials_wall_s = time.perf_counter() - started
    started = time.perf_counter()
    run_trials(task, scene, args.trials, seed=0, jobs=1, own_feet=not args.carried)
    one_job_wall_s = time.perf_counter() - started
    prediction = None if args.no_prediction else measure_prediction(example_tasks())
    raw_x = statistics.median(raw)
    x = statistics.median(r.x_realtime for r in runs)
    carried_x = statistics.median(r.x_realtime for r in carried_runs)
    result = {
        "benchmark": "preview",
        "task": "scenes/tasks/torque_wrench.yaml",
        "physics_hz": round(1.0 / TIME_STEP_S),
        "simulated_s": round(simulated_s, 3),
        "x_realtime": round(x, 2),
        "x_realtime_runs": [round(r.x_realtime, 2) for r in runs],
        "carried_x_realtime": round(carried_x, 2),
        "carried_x_realtime_runs": [round(r.x_realtime, 2) for r in carried_runs],
        "raw_pybullet_x_realtime": round(raw_x, 2),
        "raw_pybullet_x_realtime_runs": [round(v, 2) for v in raw],
        "x_realtime_over_raw": round(x / raw_x, 3),
        "carried_x_realtime_over_raw": round(carried_x / raw_x, 3),
        "passed": runs[0].passed,
        "reasons": [r.kind for r in runs[0].reasons][:5],
        "support_outside_walks": runs[0].max_support_force_fraction_outside_walks,
        "carried_passed": carried_runs[0].passed,
        "trials_on_own_feet": not args.carried,
        "trials": args.trials,
        "jobs": args.jobs or "all cores",
        "trials_wall_s": round(trials_wall_s, 2),
        "trials_per_min": round(60.0 * args.trials / trials_wall_s, 2),
        "trials_per_min_1_job": round(60.0 * args.trials / one_job_wall_s, 2),
        "jobs_speedup": round(one_job_wall_s / trials_wall_s, 2),
        "trials_success_rate": sum(o.passed for o in outcomes) / len(outcomes),
        "prediction": prediction,
        "targets": {"x_realtime_over_raw": 0.8, "jobs_speedup": 1.7},
        "machine": machine_info(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
