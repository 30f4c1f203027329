"""Preview records: which task files passed a preview, keyed by the SHA-256 of their bytes.

The dispatch gate lets a task through only if a passing record exists for the exact bytes of
the task file being dispatched; editing the file (even a comment) changes its digest, so an
edited task needs a fresh preview. Records are small JSON files in one directory:

* ``$HALL_TWIN_PREVIEWS`` when set, else
* ``${XDG_STATE_HOME:-~/.local/state}/hall-twin/previews``.

Each record is ``<sha256>.json``; the latest preview of a file replaces the earlier one, so a
failing re-run revokes an earlier pass. A record says which lessons the preview ran the task
under (:class:`LessonsChecked`: their database and ids), so the gate can refuse a pass that
never met a lesson concerning the task.

Beside the records, ``comparisons/<sha256>/<robot>.json`` keeps the latest comparison of the
preview of those bytes with a dispatched run on that robot (``twin preview TASK --against
REC.mcap``, :mod:`twin.preview.against`): a comparison of a later run replaces one of an earlier
run; ``twin dispatch`` shows it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Final

import msgspec

from twin.plan.model import TaskPlan

log = logging.getLogger(__name__)

ENV_PREVIEWS: Final = "HALL_TWIN_PREVIEWS"
MAX_SCANNED: Final = 10_000  # records looked through to say "edited since its preview"


class LessonsChecked(msgspec.Struct, frozen=True):
    """Which lessons a preview ran the task under: every lesson of ``database`` that concerned
    the task when it was previewed (those with no preview form yet included: the preview
    reported them and cannot do more). Lesson ids are numbered per database, so the gate
    trusts them only for the database they came from."""

    database: str
    """The lessons database, as an absolute path."""
    ids: list[str]


class PreviewRecord(msgspec.Struct, frozen=True):
    """The outcome of one preview of one task file."""

    task_sha256: str
    task_path: str
    robot: str
    passed: bool
    reasons: list[dict[str, Any]]
    created_ns: int
    scene_name: str
    trials: int = 1
    success_rate: float | None = None
    plan: TaskPlan | None = None
    """The plan the preview ran: the dispatch gate sends exactly this plan (and compiles the
    task itself only for a record without one)."""
    own_feet: bool = False
    """Whether the preview stood the robot on its own feet outside walks (``twin preview``'s
    default) or carried it (``--carried``; records made before previews said were carried): a
    comparison with the dispatched run previews the task the same way."""
    lessons_checked: LessonsChecked | None = None
    """The lessons the preview ran the task under; None when it checked none (``--no-lessons``,
    a lessons database it could not read, or a record made before previews said): the gate
    then refuses the task while a lesson concerns it."""


def task_digest(path: Path) -> str:
    """SHA-256 (hex) of a task file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def default_store_dir() -> Path:
    """Where preview records live (see the module docstring)."""
    if explicit := os.environ.get(ENV_PREVIEWS):
        return Path(explicit)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "hall-twin" / "previews"


def save_record(record: PreviewRecord, store_dir: Path | None = None) -> Path:
    """Write (or replace) the record of a task file; returns its path. Written atomically
    (through a unique temporary file, so concurrent previews never interleave); OSError when the
    store cannot be written."""
    root = store_dir or default_store_dir()
    target = root / f"{record.task_sha256}.json"
    _write_atomic(target, msgspec.json.encode(record))
    log.debug("preview record %s (passed=%s) -> %s", record.task_path, record.passed, target)
    return target


def _write_atomic(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a unique temporary file beside it, so readers see the
    old file or the new one, never a part."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem[:12]}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        Path(partial).replace(target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def record_path(digest: str, store_dir: Path | None = None) -> Path:
    """Where the record of the bytes with this SHA-256 lives."""
    return (store_dir or default_store_dir()) / f"{digest}.json"


def read_record(digest: str, store_dir: Path | None = None) -> PreviewRecord | None:
    """The record of the bytes with this SHA-256; None when there is none. A record that cannot
    be read raises :class:`RecordError` (saying which file and why)."""
    target = record_path(digest, store_dir)
    try:
        return msgspec.json.decode(target.read_bytes(), type=PreviewRecord)
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise RecordError(f"preview record {target} unreadable ({exc})") from None


class RecordError(Exception):
    """A preview record that exists but cannot be read."""


class Comparison(msgspec.Struct, frozen=True):
    """Predicted against actual for one task file's bytes and one robot (the latest run)."""

    task_sha256: str
    task_path: str
    robot: str
    recording: str
    dispatch_id: str
    done_ns: int
    """When the compared run finished (the robot's done, receive clock): what "latest" means."""
    created_ns: int
    figures: dict[str, Any]
    """The comparison's JSON (``twin preview --against --json``'s ``against``)."""


def comparison_path(digest: str, robot: str, store_dir: Path | None = None) -> Path:
    """Where the comparison for these bytes and this robot lives."""
    return (store_dir or default_store_dir()) / "comparisons" / digest / f"{robot}.json"


def read_comparison(digest: str, robot: str, store_dir: Path | None = None) -> Comparison | None:
    """The kept comparison, or None (none kept, or unreadable: logged)."""
    target = comparison_path(digest, robot, store_dir)
    try:
        return msgspec.json.decode(target.read_bytes(), type=Comparison)
    except FileNotFoundError:
        return None
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("comparison %s unreadable (%s); treated as missing", target, exc)
        return None


def save_comparison(comparison: Comparison, store_dir: Path | None = None) -> tuple[Path, bool]:
    """Keep the comparison unless one of a later run is kept already: (its path, whether it was
    written). Written atomically; OSError when the store cannot be written."""
    target = comparison_path(comparison.task_sha256, comparison.robot, store_dir)
    kept = read_comparison(comparison.task_sha256, comparison.robot, store_dir)
    if kept is not None and kept.done_ns > comparison.done_ns:
        log.info("kept the comparison of a later run (%s) in %s", kept.dispatch_id, target)
        return target, False
    _write_atomic(target, msgspec.json.encode(comparison))
    return target, True


class _RecordHead(msgspec.Struct):
    """Just which file a record is for (decoding skips the rest, plan included)."""

    task_sha256: str
    task_path: str


def digest_previewed_at(task_path: str, store_dir: Path | None = None) -> str | None:
    """The SHA-256 of some previewed version of the file at ``task_path`` (to tell "edited
    since its preview" from "never previewed"), or None."""
    root = store_dir or default_store_dir()
    if not root.is_dir():
        return None
    wanted = str(Path(task_path).resolve())
    for path in sorted(root.glob("*.json"))[:MAX_SCANNED]:
        try:
            head = msgspec.json.decode(path.read_bytes(), type=_RecordHead)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            continue
        if str(Path(head.task_path).resolve()) == wanted:
            return head.task_sha256
    return None


def find_record(task_path: Path, store_dir: Path | None = None) -> PreviewRecord | None:
    """The record for the task file's current bytes, or None (never previewed, or edited since).

    A record that cannot be read is logged and treated as missing: the gate then refuses.
    """
    try:
        return read_record(task_digest(task_path), store_dir)
    except RecordError as exc:
        log.warning("%s; treated as missing", exc)
        return None
