"""``twin dataset info``: what an exported dataset holds, from its episodes table alone.

Hours, episodes and failures per manufacturer, model and task, read with pyarrow from
``meta/episodes`` (the frames are never opened). The folder may be a whole export (its
``pooled/`` dataset holds every episode) or one LeRobot dataset.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

_COLUMNS = (
    "episode_index", "length", "manufacturer", "model", "task_key", "tasks", "outcome",
    "failures", "incidents", "lessons", "source_recording", "robot_id",
)  # fmt: skip


class InfoError(ValueError):
    """A folder that is not a dataset (the message says why)."""


def dataset_root(folder: Path) -> Path:
    """The LeRobot dataset to read: ``folder`` itself, or an export's ``pooled/``."""
    if (folder / "meta" / "info.json").is_file():
        return folder
    if (folder / "pooled" / "meta" / "info.json").is_file():
        return folder / "pooled"
    raise InfoError(f"{folder}: not a LeRobot dataset or a hall-twin export (no meta/info.json)")


def episode_rows(root: Path) -> list[dict[str, Any]]:
    """Every episode's row of ``meta/episodes`` (without the stats columns)."""
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    rows: list[dict[str, Any]] = []
    for path in files:
        try:
            table = pq.read_table(path)
        except Exception as exc:  # a damaged file: say which
            raise InfoError(f"{path}: does not read as Parquet ({exc})") from None
        keep = [c for c in _COLUMNS if c in table.column_names]
        rows += table.select(keep).to_pylist()
    return sorted(rows, key=lambda r: r.get("episode_index", 0))


def summarize(root: Path) -> dict[str, Any]:
    """The dataset's totals and its breakdown per manufacturer, model and task."""
    root = dataset_root(root)
    try:
        info = json.loads((root / "meta" / "info.json").read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InfoError(f"{root / 'meta' / 'info.json'}: not JSON ({exc})") from None
    fps = float(info.get("fps") or 0) or 1.0
    rows = episode_rows(root)

    def breakdown(key: str) -> dict[str, dict[str, Any]]:
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(_key(row, key), []).append(row)
        return {name: _totals(group, fps) for name, group in sorted(groups.items())}

    return {
        "dataset": str(root),
        "robot_type": info.get("robot_type"),
        "fps": info.get("fps"),
        **_totals(rows, fps),
        "recordings": sorted({str(r.get("source_recording") or "") for r in rows} - {""}),
        "per_manufacturer": breakdown("manufacturer"),
        "per_model": breakdown("model"),
        "per_task": breakdown("task"),
    }


def _key(row: dict[str, Any], key: str) -> str:
    if key == "task":
        tasks = row.get("tasks") or []
        return str(row.get("task_key") or (tasks[0] if tasks else "")) or "unnamed"
    return str(row.get(key) or "unknown")


def _totals(rows: Iterable[dict[str, Any]], fps: float) -> dict[str, Any]:
    rows = list(rows)
    frames = sum(int(r.get("length") or 0) for r in rows)
    failures = [r for r in rows if r.get("outcome") == "failure"]
    kinds: dict[str, int] = {}
    for row in failures:
        for kind in row.get("failures") or []:
            kinds[kind] = kinds.get(kind, 0) + 1
    return {
        "episodes": len(rows),
        "frames": frames,
        "hours": round(frames / fps / 3600.0, 6),
        "failures": len(failures),
        "faults": sum(1 for r in rows if r.get("outcome") == "fault"),
        "failure_kinds": dict(sorted(kinds.items())),
        "lessons": sorted({lesson for r in rows for lesson in r.get("lessons") or []}),
    }
