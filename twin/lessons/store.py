"""The lessons database: SQLite, durable across restarts, one row per lesson plus its sightings.

Gateways acknowledge the lessons sent to them over the command channel; each robot's newest
acknowledgement of a lesson is kept with it (:class:`Ack`), so ``twin lessons`` says who
received it, by robot and manufacturer, across restarts.

A lesson is keyed by what happened and where in the task (``cause kind | task | step``): the
same cause at the same step seen on a second robot adds a *sighting* and strengthens the
lesson (count, robots, manufacturers) instead of making a new one, and seeing the same
incident twice (a recording learnt from again) changes nothing. The file is ``--lessons
PATH``, else ``HALL_TWIN_LESSONS``, else ``lessons.sqlite3`` under the user's state directory
(``$XDG_STATE_HOME/hall-twin``, like the preview records).

A file that is not a lessons database, is locked past :data:`BUSY_TIMEOUT_S`, or was written
by a newer version raises :class:`LessonStoreError` with one line saying which; so does a
missing one opened only to read (:class:`NoLessonStore`: it is not created).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

ENV_LESSONS: Final = "HALL_TWIN_LESSONS"
SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT_S: Final = 2.0
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lessons (
    number INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    task TEXT NOT NULL,
    step TEXT,
    summary TEXT NOT NULL,
    condition TEXT NOT NULL,
    created_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sightings (
    lesson INTEGER NOT NULL REFERENCES lessons(number),
    robot TEXT NOT NULL,
    model TEXT NOT NULL,
    manufacturer TEXT NOT NULL,
    stamp_ns INTEGER NOT NULL,
    recording TEXT NOT NULL,
    incident TEXT NOT NULL,
    conditions TEXT NOT NULL,
    UNIQUE (lesson, robot, stamp_ns)
);
CREATE TABLE IF NOT EXISTS acks (
    lesson INTEGER NOT NULL REFERENCES lessons(number),
    robot TEXT NOT NULL,
    model TEXT NOT NULL,
    manufacturer TEXT NOT NULL,
    stamp_ns INTEGER NOT NULL,
    applied TEXT NOT NULL,
    UNIQUE (lesson, robot)
);
"""


NOT_RECORDED: Final = "live"
"""A sighting's recording when the twin that made it was recording nothing: nothing to replay."""


class LessonStoreError(Exception):
    """The lessons database cannot be used (one line: the file and why)."""


class NoLessonStore(LessonStoreError):
    """No lessons database at the path, and the caller only reads (nothing was created)."""


def default_path() -> Path:
    """``--lessons`` unset: ``HALL_TWIN_LESSONS``, else the user's state directory."""
    env = os.environ.get(ENV_LESSONS)
    if env:
        return Path(env).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "hall-twin" / "lessons.sqlite3"


@dataclass(frozen=True)
class Sighting:
    """One robot's incident that a lesson was made from."""

    robot: str
    model: str
    manufacturer: str
    stamp_ns: int
    recording: str
    incident: str
    conditions: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Ack:
    """A robot's gateway acknowledged a lesson (``applied``: what it now does differently)."""

    robot: str
    model: str
    manufacturer: str
    stamp_ns: int
    applied: str


@dataclass(frozen=True)
class Lesson:
    """A lesson and everything seen of it."""

    id: str
    kind: str
    severity: str
    task: str
    step: str | None
    summary: str
    condition: dict[str, Any]
    created_ns: int
    sightings: tuple[Sighting, ...]
    acks: tuple[Ack, ...] = ()

    @property
    def count(self) -> int:
        return len(self.sightings)

    @property
    def robots(self) -> list[str]:
        return sorted({s.robot for s in self.sightings})

    @property
    def manufacturers(self) -> list[str]:
        return sorted({s.manufacturer for s in self.sightings})

    def as_dict(self) -> dict[str, Any]:
        """What ``twin lessons --json`` says of it."""
        return {
            "id": self.id,
            "kind": self.kind,
            "severity": self.severity,
            "task": self.task,
            "step": self.step,
            "summary": self.summary,
            "condition": self.condition,
            "created_ns": self.created_ns,
            "count": self.count,
            "robots": self.robots,
            "manufacturers": self.manufacturers,
            "sightings": [s.__dict__ for s in self.sightings],
            "acks": [a.__dict__ for a in self.acks],
            "acknowledged": {
                "robots": sorted({a.robot for a in self.acks}),
                "by_manufacturer": dict(sorted(Counter(a.manufacturer for a in self.acks).items())),
            },
        }


def lesson_id(number: int) -> str:
    return f"L{number:04d}"


def _number(lesson: str) -> int | None:
    """``L0003`` -> 3; None for anything else."""
    if len(lesson) < 2 or lesson[0] != "L" or not lesson[1:].isdigit():
        return None
    return int(lesson[1:])


class LessonStore:
    """The lessons in one SQLite file (created on first use)."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        """``create``: make the file (and its folder) when missing; else a missing file raises
        :class:`NoLessonStore` (a command that only reads leaves nothing behind)."""
        self.path = Path(path)
        if not create and not self.path.exists():
            raise NoLessonStore(f"{self.path}: no lessons database there (none learnt yet)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
        except (OSError, sqlite3.Error) as exc:
            raise LessonStoreError(
                f"{self.path}: cannot open the lessons database: {exc}"
            ) from None
        try:
            with self._write():
                self._db.executescript(_SCHEMA)
                row = self._db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
                if row is None:
                    self._db.execute(
                        "INSERT INTO meta VALUES ('version', ?)", (str(SCHEMA_VERSION),)
                    )
                elif int(row[0]) > SCHEMA_VERSION:
                    raise LessonStoreError(
                        f"{self.path}: lessons database version {row[0]} is newer than this "
                        f"twin's ({SCHEMA_VERSION}); upgrade hall-twin"
                    )
        except LessonStoreError:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LessonStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        try:
            with self._db:
                yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise LessonStoreError(
                    f"{self.path}: the lessons database is locked by another process "
                    f"(waited {BUSY_TIMEOUT_S:g} s)"
                ) from None
            raise LessonStoreError(f"{self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise LessonStoreError(
                f"{self.path}: not a lessons database, or damaged ({exc})"
            ) from None

    def learn(
        self,
        *,
        kind: str,
        severity: str,
        task: str,
        step: str | None,
        summary: str,
        condition: dict[str, Any],
        sighting: Sighting,
        now_ns: int,
    ) -> tuple[str, bool]:
        """Record a sighting of the lesson ``(kind, task, step)``; its id, and whether the
        lesson is new. A sighting already recorded changes nothing."""
        key = f"{kind}|{task}|{step or '-'}"
        with self._write():
            row = self._db.execute("SELECT number FROM lessons WHERE key = ?", (key,)).fetchone()
            new = row is None
            if new:
                cursor = self._db.execute(
                    "INSERT INTO lessons (key, kind, severity, task, step, summary, condition, "
                    "created_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, kind, severity, task, step, summary, json.dumps(condition), now_ns),
                )
                number = int(cursor.lastrowid or 0)
            else:
                number = int(row[0])
            self._db.execute(
                "INSERT OR IGNORE INTO sightings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    number,
                    sighting.robot,
                    sighting.model,
                    sighting.manufacturer,
                    sighting.stamp_ns,
                    sighting.recording,
                    sighting.incident,
                    json.dumps(sighting.conditions),
                ),
            )
        return lesson_id(number), new

    def acknowledged(self, lesson: str, ack: Ack) -> bool:
        """Keep a robot's acknowledgement of a lesson (its newest replaces an older one);
        False if there is no such lesson."""
        number = _number(lesson)
        if number is None:
            return False
        with self._write():
            row = self._db.execute("SELECT 1 FROM lessons WHERE number = ?", (number,)).fetchone()
            if row is None:
                return False
            self._db.execute(
                "INSERT OR REPLACE INTO acks VALUES (?, ?, ?, ?, ?, ?)",
                (number, ack.robot, ack.model, ack.manufacturer, ack.stamp_ns, ack.applied),
            )
        return True

    def lessons(self) -> list[Lesson]:
        """Every lesson, oldest first."""
        try:
            rows = self._db.execute(
                "SELECT number, kind, severity, task, step, summary, condition, created_ns "
                "FROM lessons ORDER BY number"
            ).fetchall()
            seen = self._db.execute(
                "SELECT lesson, robot, model, manufacturer, stamp_ns, recording, incident, "
                "conditions FROM sightings ORDER BY stamp_ns"
            ).fetchall()
            acked = self._db.execute(
                "SELECT lesson, robot, model, manufacturer, stamp_ns, applied FROM acks "
                "ORDER BY stamp_ns"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise LessonStoreError(
                f"{self.path}: not a lessons database, or damaged ({exc})"
            ) from None
        by_lesson: dict[int, list[Sighting]] = {}
        for number, robot, model, maker, stamp, recording, incident, conditions in seen:
            by_lesson.setdefault(int(number), []).append(
                Sighting(
                    robot, model, maker, int(stamp), recording, incident, json.loads(conditions)
                )
            )
        acks: dict[int, list[Ack]] = {}
        for number, robot, model, maker, stamp, applied in acked:
            acks.setdefault(int(number), []).append(Ack(robot, model, maker, int(stamp), applied))
        return [
            Lesson(
                lesson_id(int(n)),
                kind,
                severity,
                task,
                step,
                summary,
                json.loads(cond),
                int(created),
                tuple(by_lesson.get(int(n), ())),
                tuple(acks.get(int(n), ())),
            )
            for n, kind, severity, task, step, summary, cond, created in rows
        ]

    def lesson(self, lesson: str) -> Lesson | None:
        """One lesson by id (``L0003``), or None."""
        return next((each for each in self.lessons() if each.id == lesson), None)
