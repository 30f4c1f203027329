"""One export job: a recording's robots read, cut into episodes, resampled, with actions.

A :class:`Unit` is one recording's work, done in a worker process (several recordings) or
in the exporting one: read the recording (all of it: its chunks decompressed once, on
``threads`` threads, the joint-state blocks and raw frames decoded in bulk by
:mod:`twin.dataset.source`), cut each robot's series into episodes while another thread
hashes the file (:mod:`twin.dataset.episodes`), resample every episode onto the dataset's
frame rate (:mod:`twin.dataset.resample`) and build its actions, then label the episodes
with the recording's failures. Each robot's whole timeline is in one unit, so episodes are never cut
at a part boundary.

Actions: a dispatched plan's episode carries the plan's commanded joint targets (sampled at
each frame; a joint the plan does not name takes the next observed position); every other
episode's action is the **next frame's observed positions** (the last frame repeats its
own), since the loop's targets never leave the robot. Each episode says which it got.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec
import numpy as np
import numpy.typing as npt

from robots import get_model
from sync.codecs import VendorCodec, codec_for
from twin.dataset import episodes as cutting
from twin.dataset.episodes import Episode
from twin.dataset.resample import Frames, resample, source_rate_hz
from twin.dataset.source import Beat, Event, arrays, iter_events, layout, read_part
from twin.dataset.stats import Stats
from twin.failures.events import FailureEvent
from twin.failures.incidents import group_incidents
from twin.plan.model import PlanTable
from twin.record.damage import DamageReport

log = logging.getLogger(__name__)

ACTION_PLAN: Final = "plan"
ACTION_OBSERVED: Final = "next_observed"
_HASH_BLOCK: Final = 1 << 22


@dataclass(frozen=True)
class Unit:
    """One job: these robots (None: all) of one recording, at ``fps``."""

    path: str
    robots: tuple[str, ...] | None
    fps: float
    stations: Mapping[str, str]  # robot id -> its station in the recording's scene
    scene_models: Mapping[str, tuple[str, str]]  # robot id -> (manufacturer, model)
    first: bool  # the recording's first unit also hashes the file
    threads: int = 1  # threads that decompress its chunks


@dataclass
class EpisodeData:
    """One episode's frames and actions, ready to write (values as float32)."""

    episode: Episode
    manufacturer: str
    model: str
    names: list[str]
    frames: Frames
    action: npt.NDArray[np.float32]
    action_source: str
    running_all: bool
    stats: dict[str, Stats] | None = None
    """Its embodiment episode's statistics where the unit made them (a worker process, so
    they are made beside the other units' work instead of after it), else None."""

    def __len__(self) -> int:
        return len(self.frames)


EpisodeStats = Callable[[EpisodeData], dict[str, Stats]]


@dataclass
class UnitResult:
    """What a unit found: its episodes (labelled with the recorded failures) and the
    recording-wide facts the parent checks and merges."""

    path: str
    episodes: list[EpisodeData]
    rates_hz: dict[str, float]
    failures: list[FailureEvent]
    monitored: bool
    lessons: list[tuple[int, Event]]
    complete: bool
    complete_chunks: int
    damage: DamageReport | None
    problems: list[str] = field(default_factory=list)
    sha256: str = ""


def file_sha256(path: Path) -> str:
    """The file's SHA-256 (hex), read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def recorded_failures(events: list[tuple[int, Event]]) -> tuple[list[FailureEvent], bool]:
    """The failure events written live, and whether the recording was monitored."""
    failures: list[FailureEvent] = []
    monitored = False
    for _, event in events:
        if event.kind == "monitors":
            monitored = True
        elif event.kind == "failure":
            try:
                failures.append(msgspec.json.decode(event.detail, type=FailureEvent))
            except msgspec.DecodeError as exc:
                log.warning("a recorded failure event does not decode: %s", exc)
    return sorted(failures, key=lambda f: f.stamp_ns), monitored or bool(failures)


def codecs(models: Mapping[str, tuple[str, str]]) -> dict[str, VendorCodec]:
    """Each robot's vendor codec, from its model in the recording's scene, for recordings
    whose joint states are JSON beside their raw frames (a robot whose model is not known
    here has none: its joint states are read from their JSON; blocks need no codec)."""
    out: dict[str, VendorCodec] = {}
    for robot_id, (_, model) in models.items():
        try:
            out[robot_id] = codec_for(get_model(model))
        except Exception as exc:  # an unknown model or package, a codec it cannot have
            log.info("%s: no codec for model %r (%s); its JSON is read", robot_id, model, exc)
    return out


def run_unit(
    unit: Unit,
    hash_file: Callable[[Path], None] | None = None,
    episode_stats: EpisodeStats | None = None,
) -> UnitResult:
    """Do one unit (this runs in a worker process, or in the exporting one). The first unit
    of a recording hashes the file once it is read, on a thread beside the rest of its
    work; ``hash_file``, if given, is handed the file to hash instead (the exporting
    process then finishes the hash while it writes) and ``sha256`` stays empty.
    ``episode_stats``, if given, makes each episode's :attr:`EpisodeData.stats`."""
    path = Path(unit.path)
    plan = layout(path, 1)  # one span: the whole file (a cut file: as far as it reads)
    span = plan.spans[0]
    wanted = set(unit.robots) if unit.robots is not None else None
    part = read_part(
        path, span, wanted, plan.complete, codecs=codecs(unit.scene_models), threads=unit.threads
    )
    log.debug(
        "%s: %d block reads, %d bulk reads of raw frames, %d from JSON",
        path, part.blocks, part.bulk, part.canonical,
    )  # fmt: skip
    # hashed once read (beside the reading, it took a core from the decompression)
    hashing = None
    if unit.first and hash_file is not None:
        hash_file(path)
    elif unit.first:
        hashing = Hashing(path)
    failures, monitored = recorded_failures(part.events)
    lessons = list(iter_events(part, "lesson"))
    all_dispatches = cutting.dispatches(part.events)
    result = UnitResult(
        path=unit.path,
        episodes=[],
        rates_hz={},
        failures=failures,
        monitored=monitored,
        lessons=lessons,
        complete=plan.complete,
        complete_chunks=part.complete_chunks,
        damage=part.damage,
        problems=part.problems[:20],
    )
    for robot_id in sorted(part.robots):
        series = arrays(part.robots[robot_id])
        if len(series.joint_t_ns) < 2:
            continue
        result.rates_hz[robot_id] = source_rate_hz(series)
        manufacturer, model = _who(series.beats, unit.scene_models.get(robot_id, ("", "")))
        mine = [d for d in all_dispatches if d.robot_id == robot_id]
        for episode in cutting.cut(series, unit.stations.get(robot_id, ""), mine):
            frames = resample(series, episode.start_ns, episode.end_ns, unit.fps)
            if len(frames) == 0:
                continue
            action, source = actions(episode, frames, series.names)
            result.episodes.append(
                EpisodeData(
                    episode, manufacturer, model, list(series.names), frames, action, source,
                    bool(frames.running.all()),
                )
            )  # fmt: skip
            if episode_stats is not None:  # in a worker process: made here, sent narrow
                data = result.episodes[-1]
                data.stats = episode_stats(data)
                data.frames = data.frames.narrowed()
    label(result.episodes, failures, lessons)
    result.sha256 = hashing.result() if hashing is not None else ""
    return result


class Hashing:
    """A file's SHA-256 on a thread of its own (hashlib runs without the GIL)."""

    def __init__(self, path: Path) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
        self._future = self._pool.submit(file_sha256, path)

    def result(self) -> str:
        try:
            return self._future.result()
        finally:
            self._pool.shutdown()


def label(
    episodes: list[EpisodeData], failures: list[FailureEvent], lessons: list[tuple[int, Event]]
) -> None:
    """Label the episodes with these failures (their incidents and lessons too)."""
    incidents = group_incidents(failures)
    cutting.label(
        [e.episode for e in episodes],
        failures,
        incidents,
        lessons,
        {i: e.running_all for i, e in enumerate(episodes)},
    )


def _who(beats: list[Beat], scene: tuple[str, str]) -> tuple[str, str]:
    """Manufacturer and model: the scene's (what the export's vocabulary is built from),
    else the heartbeats' say."""
    if scene[1]:
        return scene[0] or next((b.manufacturer for b in beats if b.manufacturer), ""), scene[1]
    for beat in beats:
        if beat.model:
            return beat.manufacturer, beat.model
    return scene


def actions(
    episode: Episode, frames: Frames, names: list[str]
) -> tuple[npt.NDArray[np.float32], str]:
    """The episode's action rows (in ``names`` order) and where they came from."""
    observed = frames.position
    nxt = np.vstack([observed[1:], observed[-1:]]) if len(observed) else observed
    if episode.plan is None or not episode.plan.frames:
        return nxt.astype(np.float32), ACTION_OBSERVED
    table = PlanTable(episode.plan)
    out = nxt.copy()
    column = {name: i for i, name in enumerate(names)}
    offsets_s = (frames.t_ns - episode.plan_start_ns) / 1e9
    for row, t_s in enumerate(offsets_s.tolist()):
        for name, value in table.at(t_s).joints_rad.items():
            i = column.get(name)
            if i is not None:
                out[row, i] = value
    return out.astype(np.float32), ACTION_PLAN
