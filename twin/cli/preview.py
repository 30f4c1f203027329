"""``twin preview TASK``: run a task file in PyBullet dynamics before it runs on hardware.

Prints a summary (or ``--json`` the report), writes plots and a recording with ``--report DIR``,
reruns under perturbed reality with ``--trials N`` (local processes, or Ray with ``--ray``), and
saves a preview record (:mod:`twin.preview.store`) the dispatch gate looks up. With ``--against
REC.mcap`` it also compares the preview with a dispatched run of the task in that recording
(:mod:`twin.cli.preview_against`). Exit status: 0 passed, 1 failed, 2 bad input (one line per
problem, no traceback).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any, Final

import typer
import zmq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hallfiles.limits import InputTooLarge, read_bytes_bounded
from scenes import SceneError, load_scene
from scenes.loader import DEFAULT_SCENE
from scenes.model import Scene
from scenes.tasks import Task, TaskError, parse_task_text
from sync.addresses import Endpoints
from sync.fanout import RequestError, request_snapshot
from twin.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, SnapshotOpt
from twin.preview.compile import compile_task
from twin.preview.dispatched import AgainstError
from twin.preview.engine import Observer, PreviewResult, run_preview
from twin.preview.store import LessonsChecked, PreviewRecord, save_record
from twin.preview.surroundings import Surroundings

log = logging.getLogger(__name__)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


LIVE_TIMEOUT_S: Final = 3.0


def _bad(lines: list[str]) -> typer.Exit:
    for line in lines:
        err.print(line, markup=False)
    return typer.Exit(EXIT_BAD_INPUT)


def _inputs(task_path: Path, scene_path: Path | None) -> tuple[Task, Scene, str, str]:
    """The task, the scene, the scene's text, and the SHA-256 of exactly the task bytes read
    (the record must name the bytes that were previewed, even if the file changes meanwhile)."""
    try:
        scene = load_scene(scene_path)
    except SceneError as exc:
        raise _bad([str(p) for p in exc.problems]) from None
    scene_file = scene_path if scene_path is not None else DEFAULT_SCENE
    try:
        data = read_bytes_bounded(task_path)
        task = parse_task_text(data.decode("utf-8"), str(task_path), scene)
    except FileNotFoundError:
        raise _bad([f"{task_path}: no such file"]) from None
    except InputTooLarge as exc:  # said as a task problem is: the problem, then the count
        raise _bad([f"{task_path}: {exc}", "1 problem; task not previewed"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad([f"{task_path}: cannot read: {exc}"]) from None
    except TaskError as exc:
        count = len(exc.problems)
        lines = [str(p) for p in exc.problems]
        lines.append(f"{count} problem{'s' if count != 1 else ''}; task not previewed")
        raise _bad(lines) from None
    return task, scene, scene_file.read_text(encoding="utf-8"), hashlib.sha256(data).hexdigest()


def preview(
    task_path: Path,
    scene_path: Path | None,
    as_json: bool,
    report_dir: Path | None,
    seed: int,
    trials: int,
    jobs: int | None,
    ray_address: str | None,
    live_snapshot: str | None = None,
    lessons_path: Path | None = None,
    use_lessons: bool = True,
    against: Path | None = None,
    against_robot: str | None = None,
    own_feet: bool = True,
) -> None:
    """The command (see the module docstring); ``live_snapshot``: the running twin's snapshot
    endpoint to take the surroundings from (default: the scene's); ``lessons_path``: the
    lessons database whose lessons concerning the task are run too; ``against``: a recording
    with a dispatched run of the task (on ``against_robot``, default the task's robot)."""
    task, scene, scene_text, digest = _inputs(task_path, scene_path)
    if against_robot is not None and against is None:
        raise _bad(["twin preview: --robot needs --against REC.mcap"])
    surroundings = (
        _live_surroundings(scene, live_snapshot)
        if live_snapshot is not None
        else Surroundings.from_scene(scene)
    )
    if trials < 0:
        raise _bad([f"twin preview: --trials {trials}: must be 0 or more"])
    if ray_address is not None and trials < 1:
        raise _bad(["twin preview: --ray needs --trials N"])
    compiled = compile_task(task, scene, own_feet=own_feet)
    found = None
    if against is not None:  # before anything is run or written: bad input is exit 2 at once
        from twin.cli.preview_against import find_in_recording
        from twin.record.damage import collect_damage, damage_lines

        problem: AgainstError | None = None
        with collect_damage() as damaged:
            try:
                robot = against_robot or task.robot
                found = find_in_recording(against, robot, task, scene, digest, compiled)
            except AgainstError as exc:
                problem = exc
        for line in damage_lines(damaged):  # said even when the damage lost the run
            err.print(f"twin preview --against: warning: {line}", markup=False)
        if problem is not None:
            raise _bad([f"twin preview --against: {problem}"]) from None
    recorder = None
    if report_dir is not None:
        from twin.preview.report import PreviewRecorder

        try:
            report_dir.mkdir(parents=True, exist_ok=True)
            recorder = PreviewRecorder(report_dir / "preview.mcap", scene, scene_text, task.robot)
        except OSError as exc:
            raise _bad([f"twin preview: --report {report_dir}: {exc.strerror}"]) from None
    observer: Observer | None = recorder
    prediction = None
    if found is not None:
        from twin.preview.against import PredictionObserver, tee

        prediction = PredictionObserver(compiled.model)
        observer = tee(recorder, prediction)
    result = run_preview(
        task, scene, compiled=compiled, observer=observer, surroundings=surroundings
    )
    report: dict[str, Any] = result.report()
    report["task_path"] = str(task_path)
    report["scene"] = scene.name
    report["surroundings"] = surroundings.source
    if report_dir is not None:
        from twin.preview.report import write_plots

        assert recorder is not None
        recorder.finish(result)
        limits = {
            "max_effort_fraction": task.limits.max_effort_fraction,
            "max_joint_limit_fraction": task.limits.max_joint_limit_fraction,
            "min_clearance_m": task.limits.min_clearance,
        }
        plots = write_plots(result, limits, report_dir)
        report["files"] = [str(p) for p in [*plots, report_dir / "preview.mcap"]]
    survived = True
    conditions: list[dict[str, Any]] = []
    checked: LessonsChecked | None = None
    if use_lessons:
        report["lessons"], conditions, checked = _lessons(
            task, scene, compiled, surroundings, lessons_path
        )
        survived = all(x["survived"] is not False for x in report["lessons"]["runs"])
    passed = result.passed and survived
    report["passed_with_lessons"] = passed
    trial_summary: dict[str, Any] | None = None
    if trials > 0:
        trial_summary = _trials(
            task, scene, trials, seed, jobs, ray_address, surroundings, conditions, own_feet
        )
        report["robustness"] = trial_summary
    if found is not None and prediction is not None:
        from twin.cli.preview_against import finish

        try:
            report["against"] = finish(
                found, prediction.prediction(), result, compiled, task_path, digest
            )
        except AgainstError as exc:
            raise _bad([f"twin preview --against: {exc}"]) from None
        except OSError as exc:
            raise _bad([f"twin preview: cannot keep the comparison: {exc}"]) from None
    if report_dir is not None:
        (report_dir / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    record = PreviewRecord(
        task_sha256=digest,
        task_path=str(task_path.resolve()),
        robot=task.robot,
        passed=passed,
        reasons=[r.as_dict() for r in result.reasons],
        created_ns=time.time_ns(),
        scene_name=scene.name,
        trials=trial_summary["trials"] if trial_summary else 1,
        success_rate=trial_summary["success_rate"] if trial_summary else None,
        plan=compiled.plan,  # what the dispatch gate sends: exactly the plan previewed
        own_feet=result.own_feet,
        lessons_checked=checked,
    )
    try:
        report["record"] = str(save_record(record))
    except OSError as exc:
        raise _bad([f"twin preview: cannot write the preview record: {exc}"]) from None
    if as_json:
        out.print(json.dumps(report, indent=2), markup=False)
    else:
        _print_summary(result, report)
        if "against" in report:
            from twin.cli.preview_against import comparison_lines

            for line in comparison_lines(report["against"]):
                out.print(line, markup=False)
    if not passed:
        raise typer.Exit(EXIT_FAILED)


def _lessons(
    task: Task,
    scene: Scene,
    compiled: Any,
    surroundings: Surroundings,
    path: Path | None,
) -> tuple[dict[str, Any], list[dict[str, Any]], LessonsChecked | None]:
    """Run the task under every lesson that concerns it: what each did, the conditions (as
    variation fields) the trials spread over, and which lessons were checked (None: none
    could be, the database failed)."""
    import dataclasses

    from twin.lessons.concern import concerning, variation_fields
    from twin.lessons.store import LessonStore, LessonStoreError, NoLessonStore, default_path
    from twin.preview.result import Variation

    where = path or default_path()
    try:
        with LessonStore(where, create=False) as store:
            found = concerning(store.lessons(), task, scene)
    except NoLessonStore:  # none learnt there yet: none concerns the task (nothing created)
        found = []
    except LessonStoreError as exc:
        err.print(f"twin preview: lessons not checked: {exc}", markup=False)
        return {"database": str(where), "error": str(exc), "runs": []}, [], None
    runs = []
    conditions = []
    for lesson in found:
        fields = variation_fields(lesson)
        row: dict[str, Any] = {
            "lesson": lesson.id, "kind": lesson.kind, "task": lesson.task,
            "condition": lesson.condition, "seen": lesson.count,
        }  # fmt: skip
        if fields is None:
            runs.append({**row, "survived": None, "why": "no preview form of this condition yet"})
            continue
        conditions.append(fields)
        variation = dataclasses.replace(Variation.nominal(), **fields)
        outcome = run_preview(
            task, scene, compiled=compiled, variation=variation, keep_series=False,
            surroundings=surroundings,
        )  # fmt: skip
        why = "; ".join(r.detail for r in outcome.reasons[:2]) if outcome.reasons else "passed"
        runs.append({**row, "survived": outcome.passed, "why": why})
    checked = LessonsChecked(str(where.resolve()), [lesson.id for lesson in found])
    return {"database": str(where), "runs": runs}, conditions, checked


def _live_surroundings(scene: Scene, endpoint: str) -> Surroundings:
    """Where the running twin reports everything, or one line and exit 2."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        state = request_snapshot(context, endpoint, timeout_s=LIVE_TIMEOUT_S)
    except RequestError as exc:
        raise _bad([f"twin preview --live: {exc} (is `twin live` running?)"]) from None
    finally:
        context.destroy(linger=0)
    if state.scene != scene.name:
        raise _bad([f"twin preview --live: the twin mirrors {state.scene!r}, not {scene.name!r}"])
    return Surroundings.from_snapshot(scene, state, endpoint)


def _trials(
    task: Task,
    scene: Scene,
    trials: int,
    seed: int,
    jobs: int | None,
    ray_address: str | None,
    surroundings: Surroundings,
    conditions: list[dict[str, Any]],
    own_feet: bool,
) -> dict[str, Any]:
    from twin.preview import trials as trials_mod

    started = time.perf_counter()
    with Progress(
        TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True,
    ) as progress:  # fmt: skip
        bar = progress.add_task("trials", total=trials)
        try:
            outcomes = trials_mod.run_trials(
                task, scene, trials, seed=seed, jobs=jobs, ray_address=ray_address,
                on_done=lambda _: progress.advance(bar), surroundings=surroundings,
                conditions=conditions, own_feet=own_feet,
            )  # fmt: skip
        except trials_mod.TrialsInputError as exc:
            raise _bad([f"twin preview: {exc}"]) from None
    summary = trials_mod.summary(outcomes, seed)
    wall = time.perf_counter() - started
    summary["wall_s"] = round(wall, 3)
    summary["trials_per_min"] = round(60.0 * trials / wall, 2) if wall > 0 else None
    summary["runner"] = f"ray {ray_address}" if ray_address else f"local, {jobs or 'all'} jobs"
    return summary


def _print_summary(result: PreviewResult, report: dict[str, Any]) -> None:
    verdict = "PASSED" if result.passed else "FAILED"
    out.print(f"{result.task} ({result.robot}): {verdict}", markup=False)
    for reason in result.reasons:
        out.print(
            f"  {reason.kind} at {reason.time_s:.2f} s (step {reason.step}): {reason.detail}",
            markup=False,
        )
    out.print(
        f"cycle {result.cycle_time_s:.2f} s, clearance {result.min_clearance_m:.3f} m "
        f"({result.min_clearance_to or 'nothing near'}), effort {result.max_effort_fraction:.2f}, "
        f"joint limit {result.max_joint_limit_fraction:.2f}, {result.x_realtime:.1f}x real time",
        markup=False,
    )
    how = "on its own feet" if result.own_feet else "carried by the stabilised base"
    out.print(
        f"support outside walks {result.max_support_force_fraction_outside_walks:.2f} of its "
        f"weight ({how}), in walks {result.max_support_force_fraction_in_walks:.2f}",
        markup=False,
    )
    if "robustness" in report:
        r = report["robustness"]
        low, high = r["success_rate_95"]
        out.print(
            f"trials: {r['passed']}/{r['trials']} passed, success rate {r['success_rate']:.2f} "
            f"(95 % {low:.2f}..{high:.2f})",
            markup=False,
        )
    for run in report.get("lessons", {}).get("runs", []):
        verdict = {True: "survived", False: "FAILED", None: "not run"}[run["survived"]]
        out.print(
            f"lesson {run['lesson']} ({run['kind']} during {run['task']}, seen {run['seen']}x, "
            f"as {run['condition'].get('kind')}): {verdict} -- {run['why']}",
            markup=False,
        )
    for path in report.get("files", []):
        out.print(path, markup=False)


def register(app: typer.Typer) -> None:
    """Add ``twin preview`` to the ``twin`` command."""

    @app.command("preview")
    def preview_cmd(
        task: Annotated[Path, typer.Argument(help="A task file (scenes/tasks/*.yaml).")],
        scene: Annotated[
            Path | None, typer.Option("--scene", help="Scene file; default: the training hall.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
        report: Annotated[
            Path | None,
            typer.Option("--report", help="Also write plots (PNG) and preview.mcap here."),
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the trials.")] = 0,
        trials: Annotated[
            int, typer.Option("--trials", help="Rerun N times under perturbed reality.")
        ] = 0,
        jobs: Annotated[
            int | None, typer.Option("--jobs", min=1, help="Local processes (default: cores).")
        ] = None,
        ray: Annotated[
            str | None,
            typer.Option("--ray", help="Run trials on Ray at ADDRESS ('local' starts one)."),
        ] = None,
        live: Annotated[
            bool,
            typer.Option(
                "--live",
                help="Place the other robots and the cranes where the running twin reports "
                "them (asks its snapshot endpoint); default: as the scene has them.",
            ),
        ] = False,
        snapshot: SnapshotOpt = None,
        lessons: Annotated[
            Path | None,
            typer.Option(
                "--lessons",
                help="Lessons database \\[default: $HALL_TWIN_LESSONS or the state folder].",
            ),
        ] = None,
        use_lessons: Annotated[
            bool,
            typer.Option(
                "--lessons-on/--no-lessons",
                help="Also run the task under every lesson that concerns it.",
            ),
        ] = True,
        against: Annotated[
            Path | None,
            typer.Option(
                "--against",
                help="Also compare the preview with the task's dispatched run in this recording "
                "(`twin live --keys --record`): cycle time, step durations, peak effort and "
                "trajectory deviation per joint.",
            ),
        ] = None,
        robot: Annotated[
            str | None,
            typer.Option(
                "--robot",
                help="With --against: the robot whose run to compare "
                "\\[default: the task's robot].",
            ),
        ] = None,
        own_feet: Annotated[
            bool,
            typer.Option(
                "--own-feet/--carried",
                help="On its own feet outside walks (whole-body balance with placo, nothing "
                "holding it: it fails on balance if it would topple), or carried throughout by "
                "the stabilised base (the earlier preview, kept to compare).",
            ),
        ] = True,
    ) -> None:
        """Preview a task in dynamics: collisions, clearance, margins, reach, grasp, balance;
        and under the reproducible condition of every lesson that concerns it."""
        live_snapshot = Endpoints.resolve(snapshot=snapshot).snapshot if live else None
        preview(
            task, scene, as_json, report, seed, trials, jobs, ray, live_snapshot,
            lessons_path=lessons, use_lessons=use_lessons, against=against,
            against_robot=robot, own_feet=own_feet,
        )  # fmt: skip
