"""``twin lessons``: list the lessons, show one, learn them from a recording.

The database is ``--lessons PATH``, else ``HALL_TWIN_LESSONS``, else the user's state
directory (:mod:`twin.lessons.store`). A database that cannot be used is one line, exit 2.
Listing and showing only read: a missing database is said in one line (no lessons: an empty
list; no such lesson: exit 2) and is not created; ``learn`` creates it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from twin.cli.common import EXIT_BAD_INPUT, JsonOpt
from twin.lessons.store import (
    NOT_RECORDED,
    Lesson,
    LessonStore,
    LessonStoreError,
    NoLessonStore,
    default_path,
)
from twin.record.damage import collect_damage, damage_lines
from twin.record.recording import RecordingError

out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)

LessonsOpt = Annotated[
    Path | None,
    typer.Option(
        "--lessons",
        help="The lessons database \\[default: $HALL_TWIN_LESSONS or ~/.local/state/hall-twin].",
    ),
]


def _open(path: Path | None) -> LessonStore:
    """The database (created when missing), or one line and exit 2."""
    try:
        return LessonStore(path or default_path())
    except LessonStoreError as exc:
        err.print(f"twin lessons: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def lessons_list(ctx: typer.Context, as_json: JsonOpt = False, lessons: LessonsOpt = None) -> None:
    """List the lessons learnt: what happened, where, how often, on which robots and makers."""
    if ctx.invoked_subcommand is not None:
        return
    where = lessons or default_path()
    try:
        with LessonStore(where, create=False) as store:
            found = store.lessons()
    except NoLessonStore as exc:  # nothing learnt there yet: say so, create nothing
        err.print(f"twin lessons: {exc}", markup=False)
        found = []
    except LessonStoreError as exc:
        err.print(f"twin lessons: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if as_json:
        sys.stdout.write(json.dumps([x.as_dict() for x in found], indent=2) + "\n")
        return
    table = Table(title=f"{len(found)} lessons ({where})", title_justify="left")
    columns = ("id", "kind", "task", "seen", "robots", "manufacturers", "reproduce as", "acked by")
    for column in columns:
        table.add_column(column)
    for lesson in found:
        table.add_row(
            lesson.id,
            lesson.kind,
            f"{lesson.task} ({lesson.step})" if lesson.step else lesson.task,
            str(lesson.count),
            ", ".join(lesson.robots),
            ", ".join(lesson.manufacturers),
            str(lesson.condition.get("kind")),
            ", ".join(sorted({a.robot for a in lesson.acks})) or "-",
        )
    out.print(table)


def lessons_show(
    lesson_id: Annotated[str, typer.Argument(help="A lesson id, e.g. L0001.")],
    as_json: JsonOpt = False,
    lessons: LessonsOpt = None,
) -> None:
    """One lesson in full, with the command that replays where it was first seen recorded."""
    where = lessons or default_path()
    try:
        with LessonStore(where, create=False) as store:
            lesson = store.lesson(lesson_id)
    except NoLessonStore as exc:
        err.print(f"twin lessons: no lesson {lesson_id!r}: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except LessonStoreError as exc:
        err.print(f"twin lessons: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if lesson is None:
        err.print(f"twin lessons: no lesson {lesson_id!r} in {where}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    replay = replay_command(lesson)
    if as_json:
        sys.stdout.write(json.dumps({**lesson.as_dict(), "replay": replay}, indent=2) + "\n")
        return
    out.print(f"[bold]{lesson.id}[/] {lesson.summary}")
    step = f" at step {lesson.step}" if lesson.step else ""
    out.print(f"severity {lesson.severity}, task {lesson.task}{step}, seen {lesson.count} times")
    out.print(f"reproduce as: {json.dumps(lesson.condition)}", markup=False)
    for s in lesson.sightings:
        out.print(
            f"  {s.robot} ({s.manufacturer} {s.model}): {json.dumps(s.conditions)}", markup=False
        )
    for a in lesson.acks:
        out.print(f"  acknowledged by {a.robot} ({a.manufacturer}): {a.applied}", markup=False)
    if replay:
        out.print(f"replay: {replay}", markup=False)
    else:
        out.print("replay: none (seen only by a twin that was not recording)", markup=False)


def replay_command(lesson: Lesson) -> str | None:
    """``twin replay REC --event F...`` of the lesson's first sighting that was recorded; None
    when every sighting was made by a twin recording nothing."""
    for seen in lesson.sightings:
        if seen.recording and seen.recording != NOT_RECORDED:
            return f"twin replay {seen.recording} --event {seen.incident}"
    return None


def lessons_learn(
    recording: Annotated[Path, typer.Argument(help="A recording (twin live --record).")],
    as_json: JsonOpt = False,
    lessons: LessonsOpt = None,
) -> None:
    """Learn lessons from a recording's incidents (new ones made, known ones strengthened)."""
    from twin.lessons.derive import learn_from_recording

    with _open(lessons) as store, collect_damage() as damaged:
        try:
            learnt = learn_from_recording(recording, store)
        except (RecordingError, LessonStoreError) as exc:
            err.print(f"twin lessons learn: {exc}", markup=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
    for line in damage_lines(damaged):
        err.print(f"twin lessons learn: warning: {line}", markup=False)
    rows = [
        {"lesson": x.lesson_id, "new": x.new, "robot": x.robot, "incident": x.incident.id,
         "cause": x.incident.cause.kind}
        for x in learnt
    ]  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    for row in rows:
        what = "new lesson" if row["new"] else "strengthens"
        out.print(f"{row['lesson']}: {what} ({row['cause']} by {row['robot']}, {row['incident']})")
    if not rows:
        out.print(f"{recording}: no incident to learn from")


def register(app: typer.Typer) -> None:
    """Add ``twin lessons``, ``twin lessons show`` and ``twin lessons learn``."""
    lessons_app = typer.Typer(
        help="Lessons learnt from incidents: list, show, learn from a recording.",
        invoke_without_command=True,
    )
    lessons_app.callback(invoke_without_command=True)(lessons_list)
    lessons_app.command("show")(lessons_show)
    lessons_app.command("learn")(lessons_learn)
    app.add_typer(lessons_app, name="lessons")
