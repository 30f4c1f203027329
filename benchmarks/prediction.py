"""How far the preview's prediction is from what the emulated robot then did, per example task.

Usage: ``python benchmarks/prediction.py [--tasks T ...] [--json]`` (``benchmarks/preview.py``
runs it too, so that every preview figure comes from one run).

For every example task in ``scenes/tasks`` the real commands run, as an engineer would run them:
``twin preview TASK`` (the dispatch gate needs a passing preview); for a passing task, a real
``twin live`` (recording) and ``twin emulate --keys`` in a hall holding only the robots of the
tasks compared (the emulator keeps real time on a busy 2-core machine, so the run's timing is
the robot's, not the machine's), then ``twin dispatch TASK --wait --compare REC --json``: the
gate sends the plan, the emulated robot runs it, and the twin compares the preview with the
run's telemetry in the recording (:mod:`twin.preview.against`). A failing task is reported with
its preview's first reason: the gate would refuse it, so it has no run to compare.

Per task: ``cycle_time_error_pct`` (actual against predicted), ``peak_effort_error_pct`` (the
median over the robot's joints of the absolute per-joint error of the peak effort, and the
worst joint), ``trajectory_rms_rad`` and the step durations' largest error. The emulator is not
the robot: its physics differ from the preview's (a kinematic base, its own controllers), which
is what the comparison measures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import machine_info

ROOT: Final = Path(__file__).resolve().parent.parent
ANY: Final = "tcp://127.0.0.1:*"
STARTUP_S: Final = 90.0
DISPATCH_RETRY_S: Final = 60.0
"""A refusal for a condition of the moment (the robot LATE on a busy machine) is asked again
for this long."""


def _run(
    args: Sequence[str], env: dict[str, str], timeout_s: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twin", *args], env={**os.environ, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip


def _hall_of(robots: set[str], work: Path) -> Path:
    """The training hall with only ``robots`` in it (benches, items, cranes as they are)."""
    lines = []
    for line in (ROOT / "scenes" / "training_hall.yaml").read_text().splitlines():
        robot = line.strip().startswith("- {id: ") and "model:" in line
        if robot and not any(f"id: {r}," in line for r in robots):
            continue
        lines.append(line)
    path = work / "hall.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _robot_of(task: Path) -> str:
    for line in task.read_text().splitlines():
        if line.startswith("robot:"):
            return line.split(":", 1)[1].strip()
    raise ValueError(f"{task}: no robot line")


def _ready(snapshot: str, robot: str) -> bool:
    import zmq

    from sync.fanout import request_status

    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        status = request_status(context, snapshot, timeout_s=5.0)
    finally:
        context.destroy(linger=0)
    row = next((r for r in status["robots"] if r["robot"] == robot), None)
    return (
        row is not None and robot in status["dispatch"]["gateways"] and (row["liveness"] == "LIVE")
    )


def _figures(against: dict[str, Any]) -> dict[str, Any]:
    """The comparison's headline figures."""
    pct = [abs(v) for v in against["peak_effort_error_pct"].values() if v is not None]
    steps = [abs(v) for v in against["step_durations_s"]["error"]]
    return {
        "cycle_time_s": against["cycle_time_s"],
        "cycle_time_error_pct": against["cycle_time_error_pct"],
        "peak_effort_error_pct_median": round(statistics.median(pct), 1) if pct else None,
        "peak_effort_joints_rated": len(pct),
        "worst_peak_effort": against["worst_peak_effort"],
        "trajectory_rms_rad": against["trajectory"]["rms_rad"],
        "trajectory_max_rad": against["trajectory"]["max_rad"],
        "step_duration_max_error_s": round(max(steps), 3) if steps else None,
        "time_scale": against["alignment"]["time_scale"],
    }


def measure(tasks: Sequence[Path]) -> dict[str, Any]:
    """Preview every task, dispatch the passing ones to the emulator and compare (see the
    module docstring)."""
    from twin.cli.child import TwinProcess

    started = time.perf_counter()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="hall-prediction-") as tmp:
        work = Path(tmp)
        env = {"HALL_TWIN_PREVIEWS": str(work / "previews")}
        robots = {task: _robot_of(task) for task in tasks}
        scene = _hall_of(set(robots.values()), work)
        passing = []
        for task in tasks:
            preview = _run(["preview", str(task), "--scene", str(scene), "--json",
                            "--no-lessons"], env, 300.0)  # fmt: skip
            report = json.loads(preview.stdout) if preview.stdout.strip() else {}
            if preview.returncode == 0:
                passing.append(task)
                continue
            first = (report.get("reasons") or [{}])[0]
            out[task.name] = {
                "robot": robots[task],
                "preview_passed": False,
                "compared": False,
                "why": "the preview fails, so the gate refuses it: "
                f"{first.get('kind')} ({first.get('detail')})",
            }
        if passing:
            keys, recording = work / "keys", work / "twin.mcap"
            _run(["keys", "init", str(keys)], {}, 60.0).check_returncode()
            twin = TwinProcess(
                "live", str(scene), "--ingest", ANY, "--fanout", ANY, "--snapshot", ANY,
                "--keys", str(keys), "--command", ANY, "--control", ANY, "--no-lessons",
                "--record", str(recording), env=env, die_with_parent=True,
            )  # fmt: skip
            emulator: TwinProcess | None = None
            try:
                found = twin.wait_for(
                    r"ingest (\S+) fan-out \S+ snapshot (\S+) command (\S+) control (\S+)",
                    STARTUP_S,
                )
                if found is None:
                    raise RuntimeError(f"the twin did not start: {''.join(twin.lines)[-500:]}")
                ingest, snapshot, command, control = found[0].groups()
                emulator = TwinProcess(
                    "emulate", str(scene), "--ingest", ingest, "--keys", str(keys),
                    "--command", command, "--no-noise", "--incidents-every", "0",
                    "--seconds", "3600", die_with_parent=True,
                )  # fmt: skip
                for task in passing:
                    robot = robots[task]
                    deadline = time.monotonic() + STARTUP_S
                    while not _ready(snapshot, robot):
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"{robot} was not LIVE with its gateway")
                        time.sleep(0.2)  # polling the twin's status, bounded by the deadline
                    out[task.name] = _dispatch(task, robot, keys, control, recording, env)
            finally:
                if emulator is not None:
                    emulator.stop()
                twin.stop()
    return {
        "benchmark": "prediction",
        "tasks": out,
        "compared": sum(1 for v in out.values() if v.get("compared")),
        "wall_s": round(time.perf_counter() - started, 1),
    }


def _dispatch(
    task: Path, robot: str, keys: Path, control: str, recording: Path, env: dict[str, str]
) -> dict[str, Any]:
    """One dispatch with ``--wait --compare``; a refusal for a condition of the moment is asked
    again for DISPATCH_RETRY_S."""
    deadline = time.monotonic() + DISPATCH_RETRY_S
    while True:
        result = _run(
            ["dispatch", str(task), "--robot", robot, "--keys", str(keys), "--control", control,
             "--json", "--wait", "--timeout", "120", "--compare", str(recording)],
            env, 180.0,
        )  # fmt: skip
        try:
            outcome = json.loads(result.stdout)
        except json.JSONDecodeError:
            why = f"twin dispatch printed no JSON: {result.stderr.strip()[-300:]}"
            return {"robot": robot, "preview_passed": True, "compared": False, "why": why}
        transient = outcome.get("condition") in ("live", "in_sync")
        if outcome.get("outcome") != "refused" or not transient or time.monotonic() > deadline:
            break
    against = outcome.get("against")
    if outcome.get("outcome") != "done" or against is None:
        return {
            "robot": robot, "preview_passed": True, "compared": False,
            "why": f"dispatch {outcome.get('outcome')}: {result.stderr.strip()[-300:]}",
        }  # fmt: skip
    return {"robot": robot, "preview_passed": True, "compared": True, **_figures(against)}


def example_tasks() -> list[Path]:
    """The example task files shipped in ``scenes/tasks``."""
    return sorted((ROOT / "scenes" / "tasks").glob("*.yaml"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", type=Path, default=None, help="default: examples")
    parser.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    args = parser.parse_args(argv)
    tasks = [t.resolve() for t in args.tasks] if args.tasks else example_tasks()
    result = {**measure(tasks), "machine": machine_info()}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
