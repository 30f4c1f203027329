"""The datasets an export writes: the pooled one and one per robot model.

:class:`Datasets` opens each dataset (:class:`twin.dataset.lerobot.DatasetWriter`) as its
first episode comes and writes every dataset on a thread of its own, its episodes in the
order they come: Parquet writing and the statistics' sorting run without the GIL, so the
datasets are written side by side. An episode's statistics are computed once, for its
model's dataset; the pooled dataset's are put together from them
(:func:`twin.dataset.features.pooled_stats`), the same numbers without a second pass over
the frames.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from twin.dataset import features as feats
from twin.dataset.card import dataset_card
from twin.dataset.info import summarize
from twin.dataset.lerobot import DatasetError, DatasetWriter, write_json, write_text
from twin.dataset.resample import METHOD
from twin.dataset.stats import Stats
from twin.dataset.work import ACTION_OBSERVED, ACTION_PLAN, EpisodeData

log = logging.getLogger(__name__)

POOLED: Final = "pooled"


class Datasets:
    """The pooled dataset and one per model, opened as their first episode comes. Each
    dataset is written on a thread of its own, its episodes in the order they come (Parquet
    writing and the statistics' sorting run without the GIL, so datasets go side by side)."""

    def __init__(self, root: Path, fps: float, vendor: list[str]) -> None:
        self.root = root
        self.fps = fps
        self.vendor = vendor
        self.writers: dict[str, DatasetWriter] = {}
        self.action_sources: dict[str, set[str]] = {}
        self._lanes: dict[str, ThreadPoolExecutor] = {}
        self._queued: list[Future[Any]] = []
        self._known: list[Future[dict[str, Stats]]] = []  # model statistics the pooled wait on

    def _submit(self, name: str, job: Callable[[], Any]) -> None:
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = ThreadPoolExecutor(1, thread_name_prefix=f"write-{name}")
        self._queued.append(lane.submit(job))

    def _wait(self) -> None:
        queued, self._queued = self._queued, []
        for future in queued:
            future.result()
        self._known = []

    def shutdown(self) -> None:
        """Stop the writing threads (what they have not begun is dropped)."""
        for lane in self._lanes.values():
            lane.shutdown(wait=False, cancel_futures=True)
        for known in self._known:  # a pooled episode waiting on a cancelled model one
            with contextlib.suppress(InvalidStateError):
                known.set_exception(DatasetError("the export stopped"))
        for lane in self._lanes.values():
            lane.shutdown()

    def _writer(self, name: str, features: feats.Features, robot_type: str) -> DatasetWriter:
        writer = self.writers.get(name)
        if writer is None:
            writer = DatasetWriter(
                self.root / name,
                robot_type=robot_type,
                fps=self.fps,
                features=features,
                episode_columns=feats.EPISODE_COLUMNS,
                info_extra={"hall_twin": notes(name == POOLED)},
            )
            self.writers[name] = writer
        return writer

    def add(self, data: EpisodeData, recording: str) -> None:
        row = feats.episode_row(data, recording)
        task = data.episode.task
        model = data.model or "unknown_model"
        if model == POOLED:
            model = f"{model}_model"
        writer = self._writer(model, feats.model_features(data.names), model)
        if writer.features["observation.state"]["names"] != data.names:
            raise DatasetError(
                f"{recording}: {data.episode.robot_id} ({model}) records joints "
                f"{len(data.names)} other than the {model} dataset's; export it to a new folder"
            )
        pooled = self._writer(POOLED, feats.pooled_features(self.vendor), "hall_twin_pooled")
        vendor = self.vendor
        known: Future[dict[str, Stats]] = Future()

        def to_model() -> None:
            try:
                columns = feats.model_columns(data)
                stats = data.stats if data.stats is not None else feats.model_stats(columns)
                known.set_result(stats)
            except BaseException as exc:
                known.set_exception(exc)
                raise
            writer.add(columns, task, row, known.result())

        def to_pooled() -> None:
            stats = feats.pooled_stats(data, vendor, known.result())
            pooled.add(feats.pooled_columns(data, vendor), task, row, stats)

        self._known.append(known)
        self._submit(model, to_model)
        self._submit(POOLED, to_pooled)
        for name in (model, POOLED):
            self.action_sources.setdefault(name, set()).add(data.action_source)

    def close(self) -> dict[str, dict[str, Any]]:
        self._wait()
        out: dict[str, dict[str, Any]] = {}
        for name in self.writers:
            self._submit(name, functools.partial(self._close_into, out, name))
        self._wait()
        return {name: out[name] for name in self.writers}

    def _close_into(self, out: dict[str, dict[str, Any]], name: str) -> None:
        out[name] = self._close(name)

    def _close(self, name: str) -> dict[str, Any]:
        info = self.writers[name].close()
        root = self.root / name
        if name == POOLED:
            write_json(root / "meta" / "modality.json", feats.modality())
        write_text(root / "README.md", dataset_card(root, summarize(root), info))
        return {
            "episodes": info["total_episodes"],
            "frames": info["total_frames"],
            "robot_type": info["robot_type"],
        }


def notes(pooled: bool) -> dict[str, Any]:
    """The ``hall_twin`` key of ``info.json``: how the frames were made."""
    return {
        "exporter": "twin export lerobot",
        "resampling": METHOD,
        "action": {
            ACTION_PLAN: "a dispatched plan's commanded joint targets at the frame's instant "
            "(a joint the plan does not name: the next observed position)",
            ACTION_OBSERVED: "no commanded targets recorded (the station's task loop runs on "
            "the robot): the next frame's observed positions (the last frame: its own)",
            "per_episode": "meta/episodes column action_source",
        },
        "units": "rad, rad/s, N*m (m, m/s, N for prismatic joints); base x,y,z in m in the "
        "hall frame, orientation as a unit quaternion (x, y, z, w)",
        "clock": "frame instants on the twin's receive clock; each robot's own stamps moved "
        "onto it by their median receive delay",
        "episodes": "a robot's task cycle (heartbeat task or cycle change), or a dispatched "
        "plan from accept to done; outcome from the failure detectors",
        "joint_mask": "state_mask: True where the robot has the canonical joint"
        if pooled
        else None,
    }
