"""``twin export lerobot``: recordings to LeRobot v3 datasets, per embodiment and pooled.

The export checks everything it can before it writes (each recording opens and has joint
channels, ``--fps`` is not above any exported robot's rate, the output folder is empty, new
or an earlier export's), then runs one :func:`twin.dataset.work.run_unit` job per recording
(in worker processes when there are several; each job decompresses its chunks on its share
of ``--jobs`` threads), writes each recording's episodes as its job finishes (each dataset
on a thread of its own), and finally swaps the finished folder in:

* it writes into ``.NAME.staging-PID`` beside ``--out`` (for an append, a copy of ``--out``
  made of hard links, which the writers never modify in place), and renames it to ``--out``
  only when all is written; any error removes the staging folder, so nothing half-written is
  left and an earlier export stays as it was;
* ``--out`` holds ``pooled/`` and one ``<model>/`` folder, each a LeRobot dataset, and
  ``hall_twin_export.json``, the manifest (recordings by name and SHA-256, fps, datasets)
  that lets a later export append and refuse a recording it already holds.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from twin.dataset import features as feats
from twin.dataset.datasets import POOLED, Datasets
from twin.dataset.lerobot import DatasetError, write_json
from twin.dataset.source import Peek, SourceError, peek, short_switches
from twin.dataset.work import (
    Hashing,
    Unit,
    UnitResult,
    file_sha256,
    label,
    run_unit,
)

log = logging.getLogger(__name__)

MANIFEST: Final = "hall_twin_export.json"
FORMAT: Final = "hall-twin lerobot export"
FORMAT_VERSION: Final = 1
RATE_MARGIN: Final = 1.02  # an --fps within 2 % of a robot's measured rate is its rate
Progress = Callable[[int, int, str], None]  # units done, units in all, what finished


class ExportError(ValueError):
    """Input the export refuses (one line: where and why); nothing was written."""


@dataclass
class Options:
    """What to export, and where."""

    recordings: Sequence[Path]
    out: Path
    fps: float = 50.0
    robots: Sequence[str] = ()
    tasks: Sequence[str] = ()
    jobs: int = 0  # 0: one per CPU
    progress: Progress | None = None


@dataclass
class Source:
    """A recording checked for export."""

    path: Path
    name: str
    size_bytes: int
    peek: Peek
    stations: dict[str, str]
    models: dict[str, tuple[str, str]]  # robot -> (manufacturer, model)
    robots: list[str]  # the robots exported from it


@dataclass
class Summary:
    """What an export did."""

    out: Path
    fps: float
    recordings: list[dict[str, Any]] = field(default_factory=list)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    recorded_s: float = 0.0
    tasks_seen: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "fps": self.fps,
            "recordings": self.recordings,
            "datasets": self.datasets,
            "warnings": self.warnings,
            "recorded_s": round(self.recorded_s, 3),
        }


def export(options: Options) -> Summary:
    """Export the recordings (see the module docstring); ExportError for refused input."""
    if not math.isfinite(options.fps) or options.fps <= 0:
        raise ExportError(f"--fps {options.fps:g}: must be a positive number")
    manifest = _read_manifest(options.out)
    if manifest is not None and float(manifest.get("fps", 0)) != float(options.fps):
        raise ExportError(
            f"{options.out}: its datasets are at {manifest.get('fps')} fps; append at that "
            f"rate (--fps {manifest.get('fps')}) or export to a new folder"
        )
    sources = [_check(path, options) for path in _recordings(options.recordings)]
    _check_names(sources)
    _check_robots(sources, options.robots)
    _check_rates(sources, options.fps)
    if manifest is not None:
        _check_new(sources, manifest, options.out)
    staging = options.out.parent / f".{options.out.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if manifest is not None:
            shutil.copytree(options.out, staging, copy_function=os.link)
        else:
            staging.mkdir(parents=True)
        try:
            summary = _write(sources, options, staging, manifest)
            if options.tasks and not any(r["episodes"] for r in summary.recordings):
                raise ExportError(
                    f"--tasks {','.join(options.tasks)}: no episode of these recordings has "
                    f"that task (theirs: {', '.join(sorted(summary.tasks_seen)) or 'none'})"
                )
        except DatasetError as exc:  # named by the folder the user gave, not the staging one
            line = str(exc).splitlines()[0].replace(str(staging), str(options.out))
            raise ExportError(line) from None
        _swap(staging, options.out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary.out = options.out
    return summary


def _recordings(paths: Sequence[Path]) -> list[Path]:
    """The recordings named: a folder stands for the ``*.mcap`` files in it (sorted)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.glob("*.mcap") if p.is_file())
            if not found:
                raise ExportError(f"{path}: a folder with no recordings (*.mcap) in it")
            out.extend(found)
        else:
            out.append(path)
    return out


def _read_manifest(out: Path) -> dict[str, Any] | None:
    if not out.exists():
        return None
    if not out.is_dir():
        raise ExportError(f"{out}: is a file, not a folder; choose a new or empty folder")
    path = out / MANIFEST
    if not path.exists():
        if any(out.iterdir()):
            raise ExportError(
                f"{out}: holds something other than a hall-twin export (no {MANIFEST}); "
                "choose a new or empty folder"
            )
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: does not read as an export manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(f"{path}: not a hall-twin export manifest")
    return manifest


def _check(path: Path, options: Options) -> Source:
    from scenes.loader import SceneError, parse_scene
    from twin.record.recording import RecordingError, open_recording

    if not path.is_file():
        raise ExportError(f"{path}: no such recording")
    try:
        recording = open_recording(path)
        scene_text = recording.scene_text
        found = peek(path)
    except (RecordingError, SourceError) as exc:
        raise ExportError(str(exc).splitlines()[0]) from None
    except OSError as exc:
        raise ExportError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    stations: dict[str, str] = {}
    models: dict[str, tuple[str, str]] = {}
    try:
        scene = parse_scene(scene_text, f"{path.name} (scene)") if scene_text else None
    except SceneError:
        scene = None
    for robot in scene.robots if scene else []:
        stations[robot.id] = robot.station or ""
        models[robot.id] = (robot.manufacturer or "", robot.model)
    joints = sorted(r for r, names in found.names.items() if names)
    if not joints:
        raise ExportError(
            f"{path}: no joint channels (/joints/<robot>) with any joint state: nothing to export"
        )
    robots = [r for r in joints if not options.robots or r in options.robots]
    return Source(path, path.name, path.stat().st_size, found, stations, models, robots)


def _check_names(sources: Sequence[Source]) -> None:
    seen: dict[str, Path] = {}
    for source in sources:
        if source.name in seen:
            raise ExportError(
                f"{source.path}: another recording of this export has the name {source.name!r} "
                f"({seen[source.name]}); episodes name their recording, so rename one"
            )
        seen[source.name] = source.path


def _check_robots(sources: Sequence[Source], wanted: Sequence[str]) -> None:
    present = {r for s in sources for r in s.peek.names}
    unknown = sorted(set(wanted) - present)
    if unknown:
        raise ExportError(
            f"--robots {', '.join(unknown)}: not in the recordings (they hold "
            f"{', '.join(sorted(present))})"
        )


def _check_rates(sources: Sequence[Source], fps: float) -> None:
    for source in sources:
        for robot_id in source.robots:
            rate = source.peek.rate_hz.get(robot_id, 0.0)
            if rate > 0 and fps > RATE_MARGIN * rate:
                raise ExportError(
                    f"--fps {fps:g} is above the source rate of {robot_id} in {source.name} "
                    f"({rate:.0f} Hz): frames would be made up between samples; use --fps "
                    f"{math.floor(rate):d} or lower"
                )


def _check_new(sources: Sequence[Source], manifest: dict[str, Any], out: Path) -> None:
    held = manifest.get("recordings", [])
    for source in sources:
        for old in held:
            same = old.get("name") == source.name and old.get("size_bytes") == source.size_bytes
            if same and old.get("sha256") == file_sha256(source.path):
                raise ExportError(
                    f"{source.path}: already exported to {out} (same name and SHA-256); "
                    "nothing to add"
                )
            if old.get("name") == source.name:
                raise ExportError(
                    f"{source.path}: {out} already holds another recording named "
                    f"{source.name!r}; rename this one"
                )


def _units(sources: Sequence[Source], options: Options, jobs: int) -> list[list[Unit]]:
    """Each recording's units. A recording whose joint states are JSON beside raw frames is
    one unit (its chunks are decompressed once), with its share of the ``jobs`` as
    decompression threads. A recording whose joint states are blocks decompresses little
    (about 50 MB for ten minutes of the hall) and decodes in numpy calls that hold the GIL,
    so threads only contend for it (117x real time on one thread, 95x on two); it is split
    instead into up to its share of the ``jobs`` units by robot, each a worker process that
    reads the whole file but decodes only its robots' states, balanced by their joint
    values a second (``benchmarks/export.py``)."""
    share = max(1, math.ceil(jobs / max(1, len(sources))))
    blocks = all(source.peek.blocks for source in sources)
    out = []
    for source in sources:
        groups: list[tuple[str, ...]] = [tuple(sorted(source.robots))]
        if blocks and share > 1 and len(source.robots) > 1:
            groups = _balanced(source, share)
        out.append(
            [
                Unit(
                    str(source.path),
                    robots,
                    options.fps,
                    source.stations,
                    source.models,
                    first=index == 0,
                    threads=1 if blocks else share,
                )
                for index, robots in enumerate(groups)
            ]
        )
    return out


def _balanced(source: Source, parts: int) -> list[tuple[str, ...]]:
    """The recording's robots in up to ``parts`` groups of about equal load (joint values a
    second: rate times joints), the heaviest robot first into the lightest group."""

    def load(robot_id: str) -> float:
        return source.peek.rate_hz.get(robot_id, 0.0) * len(source.peek.names.get(robot_id, ()))

    groups: list[list[str]] = [[] for _ in range(min(parts, len(source.robots)))]
    loads = [0.0] * len(groups)
    for robot_id in sorted(source.robots, key=lambda r: (-load(r), r)):
        lightest = loads.index(min(loads))
        groups[lightest].append(robot_id)
        loads[lightest] += load(robot_id)
    return [tuple(sorted(group)) for group in groups if group]


def _write(
    sources: Sequence[Source], options: Options, staging: Path, manifest: dict[str, Any] | None
) -> Summary:
    jobs = options.jobs or os.cpu_count() or 1
    units = _units(sources, options, jobs)
    total = sum(len(u) for u in units)
    summary = Summary(staging, options.fps)
    names_by_model: dict[str, list[str]] = {}
    for source in sources:
        for robot_id in source.robots:
            model = source.models.get(robot_id, ("", ""))[1]
            names_by_model.setdefault(model, source.peek.names.get(robot_id, []))
    vendor = feats.vendor_joints(names_by_model)
    held = _held_vendor(staging) if manifest is not None else None
    if held is not None:  # an append keeps the pooled dataset's vendor-only vocabulary
        new = sorted(set(vendor) - set(held))
        if new:
            raise ExportError(
                f"{options.out}: its pooled dataset has no vendor-only joints "
                f"{', '.join(new)} (these recordings' models have them); export them to a "
                "new folder"
            )
        vendor = held
    sets = Datasets(staging, options.fps, vendor)
    done = 0
    hashes = _Hashes()  # the recordings read here are hashed while their datasets are written
    pool = ProcessPoolExecutor(max_workers=min(jobs, total)) if jobs > 1 and total > 1 else None
    with short_switches():  # the units' threads and the writing threads share the GIL
        try:
            futures: list[list[Future[UnitResult]]] = []
            if pool is not None:
                futures = [
                    [pool.submit(run_unit, unit, None, feats.episode_stats) for unit in group]
                    for group in units
                ]
            for index, (source, group) in enumerate(zip(sources, units, strict=True)):
                results = []
                for position, unit in enumerate(group):
                    results.append(
                        futures[index][position].result()
                        if pool is not None
                        else run_unit(unit, hashes.start)
                    )
                    done += 1
                    if options.progress is not None:
                        options.progress(done, total, source.name)
                row = _add_recording(source, results, options, sets, summary)
                summary.recordings.append(row)
            summary.datasets = sets.close()
            for row in summary.recordings:
                row["sha256"] = row["sha256"] or hashes.result(row.pop("path"))
                row.pop("path", None)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            sets.shutdown()
    old = manifest.get("recordings", []) if manifest else []
    write_json(
        staging / MANIFEST,
        {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "fps": options.fps,
            "recordings": [*old, *summary.recordings],
            "datasets": sorted(p.name for p in staging.iterdir() if (p / "meta").is_dir()),
        },
    )
    return summary


def _held_vendor(root: Path) -> list[str] | None:
    """The vendor-only joints of the pooled dataset under ``root`` (none: []), or None
    where there is no pooled dataset yet."""
    info_path = root / POOLED / "meta" / "info.json"
    if not info_path.exists():
        return None
    try:
        features = json.loads(info_path.read_text(encoding="utf-8")).get("features", {})
        names = features.get("observation.vendor_state", {}).get("names", [])
    except (OSError, ValueError, AttributeError) as exc:
        raise ExportError(f"{info_path}: does not read as a dataset's info ({exc})") from None
    return [str(n) for n in names]


def _add_recording(
    source: Source,
    results: list[UnitResult],
    options: Options,
    sets: Datasets,
    summary: Summary,
) -> dict[str, Any]:
    first = results[0]  # a recording's one unit
    episodes = [e for r in results for e in r.episodes]
    if not first.monitored:
        from twin.failures.offline import detect_offline
        from twin.record.recording import open_recording

        log.info("%s was recorded without monitors: running the detectors", source.name)
        failures = detect_offline(open_recording(source.path), collisions=False)
        label(episodes, failures, first.lessons)
    damage = first.damage
    if damage is not None and damage.damaged:
        summary.warnings.append(
            f"{damage.line()} (used the {first.complete_chunks} whole chunks it holds)"
        )
    for result in results:
        for problem in result.problems:
            summary.warnings.append(f"{source.name}: {problem}")
    wanted = set(options.tasks)
    kept = 0
    frames = 0
    for data in sorted(episodes, key=lambda e: (e.episode.start_ns, e.episode.robot_id)):
        e = data.episode
        summary.tasks_seen.update([e.task_key] if e.task_key else [])
        if wanted and not ({e.task_key, e.task} & wanted):
            continue
        sets.add(data, source.name)
        kept += 1
        frames += len(data)
        summary.recorded_s += len(data) / options.fps
    return {
        "name": source.name,
        "sha256": first.sha256,
        "path": first.path,  # what the SHA-256 is looked up by, if it is still being made
        "size_bytes": source.size_bytes,
        "episodes": kept,
        "frames": frames,
        "complete": first.complete,
    }


class _Hashes:
    """SHA-256s being made on threads, by file."""

    def __init__(self) -> None:
        self._running: dict[str, Hashing] = {}

    def start(self, path: Path) -> None:
        self._running[str(path)] = Hashing(path)

    def result(self, path: str) -> str:
        hashing = self._running.pop(path, None)
        return hashing.result() if hashing is not None else file_sha256(Path(path))


def _swap(staging: Path, out: Path) -> None:
    """Put the finished staging folder where ``out`` is (the old one removed after)."""
    if out.exists():
        aside = out.parent / f".{out.name}.old-{os.getpid()}"
        out.replace(aside)
        staging.replace(out)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.replace(out)
