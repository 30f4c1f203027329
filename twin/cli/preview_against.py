"""``twin preview TASK --against REC.mcap``: the preview beside a dispatched run of the task.

:func:`find_in_recording` opens the recording and finds the run and the robot's joints before
the preview runs (bad input is one line, exit 2, with nothing run); :func:`finish` compares, keeps
the comparison in the preview store (:func:`twin.preview.store.save_comparison`) and gives the
figures; :func:`comparison_lines` is their text form, :func:`summary_line` the one line
``twin dispatch`` shows for a task whose run was compared. :func:`compare_dispatch` is
``twin dispatch --wait --compare REC.mcap``: once the robot is done, the same comparison from
the twin's recording as it is being written (polled until the dispatch's done is in it).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from scenes import SceneError
from scenes.loader import parse_scene
from scenes.model import Scene
from scenes.tasks import Task, TaskError, parse_task_text
from twin.preview.against import Prediction, PredictionObserver, compare
from twin.preview.compile import compile_task
from twin.preview.compiled import CompiledTask
from twin.preview.dispatched import AgainstError, DispatchedRun, Telemetry, find_run, read_joints
from twin.preview.engine import run_preview
from twin.preview.result import PreviewResult
from twin.preview.store import Comparison, RecordError, read_record, save_comparison
from twin.record.recording import RecordingError, open_recording

log = logging.getLogger(__name__)

_MARGIN_NS: Final = 1_000_000_000  # joints read either side of the run
FLUSH_WAIT_S: Final = 15.0
"""How long ``twin dispatch --compare`` waits for the done to reach the recording's file."""
_POLL_S: Final = 0.25
_LOCATED: Final = {
    "start": "at the plan's start",
    "fit": "located by a local fit",
    "plan": "where the whole-run fit puts it",
}


@dataclass(frozen=True)
class Found:
    """A recording's run of the task and the robot's joints around it."""

    path: Path
    run: DispatchedRun
    telemetry: Telemetry


def find_in_recording(
    path: Path, robot: str, task: Task, scene: Scene, digest: str, compiled: CompiledTask
) -> Found:
    """The run of ``task`` on ``robot`` in the recording at ``path``; AgainstError (one line)
    for a missing file, a file that is not a recording of this hall, or no such run."""
    if robot not in {r.id for r in scene.robots}:
        raise AgainstError(f"--robot {robot}: no such robot in {scene.name!r}")
    if not path.exists():
        raise AgainstError(f"{path}: no such file")
    try:
        recording = open_recording(path)
        try:
            recorded = parse_scene(recording.scene_text, f"{path}:scene.yaml").name
        except SceneError:
            recorded = None
        if recorded is not None and recorded != scene.name:
            raise AgainstError(
                f"{path}: a recording of {recorded!r}; the task is previewed in {scene.name!r}"
            )
        run = find_run(recording, robot, task.name, digest, compiled.plan.duration_s)
        telemetry = read_joints(
            recording, robot, run.start_ns - _MARGIN_NS, run.done_ns + _MARGIN_NS
        )
    except RecordingError as exc:
        raise AgainstError(str(exc)) from None
    log.info("%s: run %s of %s on %s", path, run.dispatch_id or run.source, task.name, robot)
    return Found(path, run, telemetry)


def finish(
    found: Found,
    prediction: Prediction,
    result: PreviewResult,
    compiled: CompiledTask,
    task_path: Path,
    digest: str,
) -> dict[str, Any]:
    """The comparison's figures, kept in the preview store (``record``: where; ``kept``: False
    when a comparison of a later run is kept there instead). OSError when the store cannot be
    written; AgainstError when nothing can be compared."""
    figures = compare(
        prediction=prediction,
        result=result,
        compiled=compiled,
        run=found.run,
        telemetry=found.telemetry,
    )
    comparison, where, kept = _keep(found, figures, task_path, digest)
    return {**comparison.figures, "record": str(where), "kept": kept}


def _keep(
    found: Found, figures: dict[str, Any], task_path: Path, digest: str
) -> tuple[Comparison, Path, bool]:
    """The comparison kept in the preview store: (it, where, whether it was written)."""
    comparison = Comparison(
        task_sha256=digest,
        task_path=str(task_path.resolve()),
        robot=found.run.robot,
        recording=str(found.path.resolve()),
        dispatch_id=found.run.dispatch_id,
        done_ns=found.run.done_ns,
        created_ns=time.time_ns(),
        figures={"recording": str(found.path), **figures},
    )
    where, kept = save_comparison(comparison)
    return comparison, where, kept


def compare_dispatch(
    task_path: Path, text: bytes, robot: str, recording_path: Path, dispatch_id: str
) -> Comparison:
    """The comparison of the preview of these task bytes with dispatch ``dispatch_id`` in the
    twin's recording (in the hall the recording holds), kept in the preview store; AgainstError
    (one line) when the run does not reach the file within :data:`FLUSH_WAIT_S` or cannot be
    compared."""
    digest = hashlib.sha256(text).hexdigest()
    try:  # previewed as the gate's record says (own feet or carried)
        record = read_record(digest)
    except RecordError as exc:
        raise AgainstError(str(exc)) from None
    own_feet = record.own_feet if record is not None else True
    deadline = time.monotonic() + FLUSH_WAIT_S
    while True:
        try:
            recording = open_recording(recording_path)
            scene = parse_scene(recording.scene_text, f"{recording_path}:scene.yaml")
            task = parse_task_text(text.decode("utf-8"), str(task_path), scene)
            compiled = compile_task(task, scene, own_feet=own_feet)
            run = find_run(
                recording, robot, task.name, digest, compiled.plan.duration_s, dispatch_id
            )
            break
        except (SceneError, TaskError, UnicodeDecodeError) as exc:
            raise AgainstError(
                f"{recording_path}: cannot preview {task_path} in it: {exc}"
            ) from None
        except (AgainstError, RecordingError) as exc:
            if time.monotonic() > deadline:
                raise AgainstError(f"{exc} (waited {FLUSH_WAIT_S:g} s)") from None
            time.sleep(_POLL_S)
    telemetry = read_joints(recording, robot, run.start_ns - _MARGIN_NS, run.done_ns + _MARGIN_NS)
    prediction = PredictionObserver(compiled.model)
    result = run_preview(task, scene, compiled=compiled, observer=prediction)
    figures = compare(
        prediction=prediction.prediction(),
        result=result,
        compiled=compiled,
        run=run,
        telemetry=telemetry,
    )
    comparison, _, _ = _keep(Found(recording_path, run, telemetry), figures, task_path, digest)
    return comparison


def _signed(value: float | None, unit: str, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}{unit}"


def comparison_lines(figures: dict[str, Any]) -> list[str]:
    """The comparison as text lines."""
    run, cycle = figures["run"], figures["cycle_time_s"]
    who = f"dispatch {run['dispatch_id']}" if run["dispatch_id"] else f"the run ({run['source']})"
    lines = [
        f"against {figures['recording']}: {who} of {figures['task']} on {figures['robot']} "
        f"({run['outcome']}); the plan started {run['lead_in_s']:.2f} s after the accept, "
        f"fit RMS {figures['alignment']['fit_rms_rad']:.3f} rad, time scale "
        f"{figures['alignment']['time_scale']:.3f}",
        *[f"  note: {note}" for note in run["notes"]],
        f"cycle time: predicted {cycle['predicted']:.2f} s, actual {cycle['actual']:.2f} s "
        f"({_signed(cycle['error'], ' s')}, {_signed(figures['cycle_time_error_pct'], ' %', 1)})",
    ]
    if run["plan_matches_preview"] is False:
        lines.insert(1, "  note: the plan sent differs from the plan previewed now")
    steps = figures["step_durations_s"]
    for step, p, a, e in zip(
        figures["steps"], steps["predicted"], steps["actual"], steps["error"], strict=True
    ):
        lines.append(
            f"  step {step['index']} {step['label']}: predicted {p:.2f} s, actual {a:.2f} s "
            f"({e:+.2f} s; start {_LOCATED.get(step['boundary'], step['boundary'])})"
        )
    clearance = figures["min_clearance_m"]
    lines.append(
        f"min clearance: predicted {clearance['predicted']:.3f} m "
        f"({clearance['predicted_to'] or 'nothing near'}); actual not measured: {clearance['why']}"
    )
    trajectory = figures["trajectory"]
    lines.append(
        f"trajectory: RMS {trajectory['rms_rad']:.3f} rad over {len(figures['trajectory_rms_rad'])}"
        f" joints, largest {trajectory['max_rad']:.3f} rad ({trajectory['max_joint']})"
    )
    lines.append(
        f"{'joint':<22} {'peak effort (N m) predicted':>27} {'actual':>8} {'error':>9} "
        f"{'RMS (rad)':>10} {'max (rad)':>10}"
    )
    effort = figures["peak_effort_nm"]
    for name, predicted in effort["predicted"].items():
        lines.append(
            f"{name:<22} {predicted:>27.2f} {effort['actual'][name]:>8.2f} "
            f"{_signed(figures['peak_effort_error_pct'][name], ' %', 1):>9} "
            f"{figures['trajectory_rms_rad'][name]:>10.4f} "
            f"{figures['trajectory_max_rad'][name]:>10.4f}"
        )
    kept = "kept in" if figures.get("kept", True) else "not kept (a later run's is) in"
    lines.append(f"comparison {kept} {figures.get('record', '')}")
    return lines


def summary_line(comparison: Comparison) -> str:
    """One line for ``twin dispatch``: the kept comparison of the task's last compared run."""
    figures = comparison.figures
    cycle = figures["cycle_time_s"]
    worst = figures.get("worst_peak_effort") or {}
    effort = (
        f"; worst peak effort {worst['joint']} {_signed(worst['error_pct'], ' %', 1)}"
        if worst
        else ""
    )
    return (
        f"last compared run ({comparison.dispatch_id or 'by heartbeats'} in "
        f"{comparison.recording}): cycle {cycle['predicted']:.2f} s predicted, "
        f"{cycle['actual']:.2f} s actual ({_signed(figures['cycle_time_error_pct'], ' %', 1)})"
        f"{effort}; trajectory RMS {figures['trajectory']['rms_rad']:.3f} rad"
    )
