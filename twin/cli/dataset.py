"""``twin export lerobot`` and ``twin dataset info``: recordings as LeRobot training data.

Refused input (a recording that does not open or has no joint channels, an ``--fps`` above a
robot's rate, an output folder that holds something else) is one line on stderr and exit 2,
with nothing written (:mod:`twin.dataset.export`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from twin.cli.common import EXIT_BAD_INPUT, JsonOpt
from twin.dataset.export import ExportError, Options, export
from twin.dataset.info import InfoError, summarize

out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def export_lerobot(
    recordings: Annotated[
        list[Path],
        typer.Argument(help="MCAP recordings (live, demo, preview, resim), or folders of them."),
    ],
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out",
            help="The export folder (new, empty or an earlier export, which is appended to).",
        ),
    ],
    fps: Annotated[float, typer.Option("--fps", help="Frames per second of the datasets.")] = 50.0,
    robots: Annotated[
        list[str] | None, typer.Option("--robots", help="Only these robot ids (repeatable).")
    ] = None,
    tasks: Annotated[
        list[str] | None,
        typer.Option(
            "--tasks",
            help="Only these tasks (a scene task kind such as squats, or "
            "a dispatched task's name; repeatable).",
        ),
    ] = None,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            help="Processes over the recordings, threads decompressing one (0: one per CPU).",
        ),
    ] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Export recordings as LeRobot v3 datasets: one per robot model and one pooled over
    the canonical skeleton, episodes labelled with the failures the twin detected."""
    quiet = as_json or not sys.stderr.isatty()
    columns = (TextColumn("exporting"), BarColumn(), MofNCompleteColumn())
    bar = Progress(
        *columns, TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
        disable=quiet,
    )  # fmt: skip
    with bar:
        job = bar.add_task("", total=None)

        def progress(done: int, total: int, name: str) -> None:
            bar.update(job, completed=done, total=total, description=name)

        try:
            summary = export(
                Options(recordings, out_dir, fps, robots or (), tasks or (), jobs, progress)
            )
        except ExportError as exc:
            bar.stop()
            err.print(f"twin export lerobot: {exc}", markup=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
    for warning in summary.warnings:
        err.print(f"twin export lerobot: {warning}", markup=False)
    if as_json:
        sys.stdout.write(json.dumps(summary.as_dict(), indent=2) + "\n")
        return
    added = sum(r["episodes"] for r in summary.recordings)
    out.print(
        f"exported {added} episodes ({summary.recorded_s / 60:.1f} min at {fps:g} fps) from "
        f"{len(summary.recordings)} recording(s) to {summary.out}",
        markup=False,
    )
    for name, row in sorted(summary.datasets.items()):
        out.print(
            f"  {summary.out / name}: {row['episodes']} episodes, {row['frames']} frames",
            markup=False,
        )


def dataset_info(
    folder: Annotated[Path, typer.Argument(help="An export folder or one LeRobot dataset.")],
    as_json: JsonOpt = False,
) -> None:
    """Hours, episodes and failures per manufacturer, model and task of a dataset."""
    try:
        summary = summarize(folder)
    except InfoError as exc:
        err.print(f"twin dataset info: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return
    out.print(
        f"{summary['dataset']}: {summary['episodes']} episodes, {summary['hours']:.3f} h at "
        f"{summary['fps']} fps, {summary['failures']} failures; from "
        f"{', '.join(summary['recordings'])}",
        markup=False,
    )
    for title, key in (("manufacturer", "per_manufacturer"), ("model", "per_model"),
                       ("task", "per_task")):  # fmt: skip
        table = Table(title=f"per {title}", title_justify="left")
        for column in (title, "episodes", "hours", "failures", "faults", "failure kinds"):
            table.add_column(column)
        for name, row in summary[key].items():
            kinds = ", ".join(f"{k} {n}" for k, n in row["failure_kinds"].items())
            table.add_row(
                name, str(row["episodes"]), f"{row['hours']:.4f}", str(row["failures"]),
                str(row["faults"]), kinds,
            )  # fmt: skip
        out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``twin export lerobot`` and ``twin dataset info``."""
    export_app = typer.Typer(help="Export recordings as training data.", no_args_is_help=True)
    export_app.command("lerobot")(export_lerobot)
    app.add_typer(export_app, name="export")
    dataset_app = typer.Typer(help="Exported datasets.", no_args_is_help=True)
    dataset_app.command("info")(dataset_info)
    app.add_typer(dataset_app, name="dataset")
