"""Writing a LeRobot v3 dataset folder with pyarrow, new or appended to.

The layout is LeRobot's v3 format (``lerobot/datasets/utils.py`` spells the same paths)::

    meta/info.json                      features, fps, totals, paths
    meta/stats.json                     per-feature statistics over all episodes
    meta/tasks.parquet                  task strings (the index) -> task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode (+ its stats)
    data/chunk-000/file-000.parquet     one row per frame, one row group per episode

A feature of shape ``[1]`` is a scalar column, ``[n]`` a fixed-size list (what LeRobot's
``get_hf_features_from_features`` expects). Appending never rewrites what is there: new
episodes go to new data and episodes files, and the small tables (``tasks``, ``stats``,
``info``) are replaced whole by writing beside them and renaming, so a folder whose files
are hard links of another's (the export's staging copy) leaves the original untouched.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from twin.dataset import stats as statistics

log = logging.getLogger(__name__)

CODEBASE_VERSION: Final = "v3.0"
CHUNKS_SIZE: Final = 1000
DATA_FILES_SIZE_IN_MB: Final = 100
VIDEO_FILES_SIZE_IN_MB: Final = 200
DATA_PATH: Final = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH: Final = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
DEFAULT_FEATURES: Final[dict[str, dict[str, Any]]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
DATA_FILE_OPTIONS: Final[dict[str, Any]] = {"compression": "snappy", "use_dictionary": False}
"""How the frames are written. No dictionary encoding: the frames' floats are nearly all
distinct, so pyarrow built a dictionary for every column only to drop it, twice the cost of
writing them plain (and larger files); the few repeating columns (episode and task index)
are runs that Snappy shrinks as well."""
_ARROW: Final[dict[str, pa.DataType]] = {
    "float32": pa.float32(),
    "float64": pa.float64(),
    "int64": pa.int64(),
    "bool": pa.bool_(),
}

Features = dict[str, dict[str, Any]]
Columns = Mapping[str, npt.NDArray[Any]]


class DatasetError(ValueError):
    """A dataset folder this export cannot write to (the message says why)."""


def arrow_type(feature: Mapping[str, Any]) -> pa.DataType:
    """A feature's column type: a scalar for shape [1], a fixed-size list for [n]."""
    value = _ARROW[feature["dtype"]]
    shape = list(feature["shape"])
    if shape == [1]:
        return value
    if len(shape) != 1:
        raise ValueError(f"features of shape {shape} are not written by this exporter")
    return pa.list_(value, int(shape[0]))


def _column(values: npt.NDArray[Any], feature: Mapping[str, Any]) -> pa.Array[Any]:
    kind = arrow_type(feature)
    if not pa.types.is_fixed_size_list(kind):
        return pa.array(np.ascontiguousarray(values).reshape(-1), type=kind)
    flat = pa.array(np.ascontiguousarray(values).reshape(-1), type=kind.value_type)
    return pa.FixedSizeListArray.from_arrays(flat, kind.list_size)


def _episode_schema(features: Features, extra: Mapping[str, pa.DataType]) -> pa.Schema:
    fields = [
        pa.field("episode_index", pa.int64()),
        pa.field("tasks", pa.list_(pa.string())),
        pa.field("length", pa.int64()),
        pa.field("data/chunk_index", pa.int64()),
        pa.field("data/file_index", pa.int64()),
        pa.field("dataset_from_index", pa.int64()),
        pa.field("dataset_to_index", pa.int64()),
        pa.field("meta/episodes/chunk_index", pa.int64()),
        pa.field("meta/episodes/file_index", pa.int64()),
    ]
    fields += [pa.field(name, kind) for name, kind in extra.items()]
    for key in features:
        for stat in statistics.KEYS:
            fields.append(pa.field(f"stats/{key}/{stat}", pa.list_(pa.float64())))
    return pa.schema(fields)


def _next_file(chunk: int, file: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file + 1 >= CHUNKS_SIZE else (chunk, file + 1)


def _last_file(root: Path, pattern: str) -> tuple[int, int] | None:
    """The highest (chunk, file) of the existing files under ``pattern``'s folder."""
    base = root / pattern.split("/chunk-")[0]
    found = []
    for path in base.glob("chunk-*/file-*.parquet"):
        try:
            found.append((int(path.parent.name[6:]), int(path.stem[5:])))
        except ValueError:
            continue
    return max(found) if found else None


def write_json(path: Path, value: object) -> None:
    """Replace ``path`` whole (write beside it, rename): a hard-linked old copy stays."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_text(path: Path, text: str) -> None:
    """Replace a text file whole, as :func:`write_json`."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _tasks_table(tasks: Sequence[str]) -> pa.Table:
    """``meta/tasks.parquet`` as LeRobot reads it with pandas: the task strings are the
    index (pandas metadata names the index column), ``task_index`` the one column."""
    table = pa.table(
        {
            "task_index": pa.array(range(len(tasks)), type=pa.int64()),
            "__index_level_0__": pa.array(list(tasks), type=pa.string()),
        }
    )
    pandas = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [
            {"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
             "metadata": {"encoding": "UTF-8"}}
        ],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
             "numpy_type": "int64", "metadata": None},
            {"name": None, "field_name": "__index_level_0__", "pandas_type": "unicode",
             "numpy_type": "object", "metadata": None},
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }  # fmt: skip
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas).encode()})


def read_tasks(root: Path) -> list[str]:
    """The dataset's task strings in task_index order."""
    path = root / "meta" / "tasks.parquet"
    if not path.exists():
        return []
    table = pq.read_table(path)
    column = "__index_level_0__" if "__index_level_0__" in table.column_names else "task"
    pairs = sorted(zip(table["task_index"].to_pylist(), table[column].to_pylist(), strict=True))
    return [str(task) for _, task in pairs]


class DatasetWriter:
    """Appends episodes to a LeRobot v3 dataset at ``root`` (made if it is not there).

    ``features`` are the dataset's own (the five default features are added);
    ``episode_columns`` the extra per-episode columns and their types; ``info_extra`` keys
    merged into ``info.json``. An existing dataset must have the same features and fps.
    """

    def __init__(
        self,
        root: Path,
        *,
        robot_type: str,
        fps: float,
        features: Features,
        episode_columns: Mapping[str, pa.DataType],
        info_extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.fps = fps
        self.features: Features = {**features, **DEFAULT_FEATURES}
        self.episode_columns = dict(episode_columns)
        self.info_extra = dict(info_extra or {})
        self.robot_type = robot_type
        self._schema = pa.schema(
            [pa.field(key, arrow_type(ft)) for key, ft in self.features.items()]
        )
        self._episode_schema = _episode_schema(self.features, self.episode_columns)
        self.tasks: list[str] = []
        self.episode_index = 0
        self.frame_index = 0
        self.old_stats: dict[str, statistics.Stats] = {}
        self._episodes: list[dict[str, Any]] = []
        self._new_stats: list[dict[str, statistics.Stats]] = []
        info_path = root / "meta" / "info.json"
        if info_path.exists():
            self._open_existing(info_path)
        last = _last_file(root, DATA_PATH)
        self._data_at = _next_file(*last) if last else (0, 0)
        last_meta = _last_file(root, EPISODES_PATH)
        self._meta_at = _next_file(*last_meta) if last_meta else (0, 0)
        self._writer: pq.ParquetWriter | None = None
        self._written_bytes = 0

    def _open_existing(self, info_path: Path) -> None:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if float(info.get("fps", 0)) != float(self.fps):
            raise DatasetError(
                f"{self.root}: the dataset is at {info.get('fps')} fps, this export at "
                f"{self.fps:g}: export to a new folder or pass --fps {info.get('fps')}"
            )
        theirs = info.get("features", {})
        if _plain(theirs) != _plain(self.features):
            changed = sorted(
                k for k in set(theirs) | set(self.features)
                if _plain(theirs.get(k)) != _plain(self.features.get(k))
            )  # fmt: skip
            raise DatasetError(
                f"{self.root}: its features differ from this export's ({', '.join(changed)}); "
                "export to a new folder"
            )
        self.info_extra = {**{k: info[k] for k in self.info_extra if k in info}, **self.info_extra}
        self.episode_index = int(info.get("total_episodes", 0))
        self.frame_index = int(info.get("total_frames", 0))
        self.tasks = read_tasks(self.root)
        stats_path = self.root / "meta" / "stats.json"
        if stats_path.exists():
            self.old_stats = statistics.from_json(json.loads(stats_path.read_text("utf-8")))

    def task_index(self, task: str) -> int:
        if task not in self.tasks:
            self.tasks.append(task)
        return self.tasks.index(task)

    def add(
        self,
        columns: Columns,
        task: str,
        row: Mapping[str, Any],
        stats: Mapping[str, statistics.Stats] | None = None,
    ) -> int:
        """Write one episode's frames (``columns``: every non-default feature, rows =
        frames); ``row``: its extra episode columns; ``stats``: statistics of some features
        already known (exactly what :func:`statistics.feature_stats` gives for them).
        Returns its episode index."""
        length = len(next(iter(columns.values())))
        episode = self.episode_index
        task_index = self.task_index(task)
        full: dict[str, npt.NDArray[Any]] = dict(columns)
        full["timestamp"] = (np.arange(length) / self.fps).astype(np.float32)
        full["frame_index"] = np.arange(length, dtype=np.int64)
        full["episode_index"] = np.full(length, episode, dtype=np.int64)
        full["index"] = self.frame_index + np.arange(length, dtype=np.int64)
        full["task_index"] = np.full(length, task_index, dtype=np.int64)
        missing = sorted(set(self.features) - set(full))
        if missing:
            raise ValueError(f"episode without features {missing}")
        table = pa.Table.from_arrays(
            [_column(full[key], ft) for key, ft in self.features.items()], schema=self._schema
        )
        chunk, file = self._data_file(table.nbytes)
        assert self._writer is not None
        self._writer.write_table(table)
        self._written_bytes += table.nbytes
        known = stats or {}
        episode_stats = {
            key: known[key] if key in known else statistics.feature_stats(full[key])
            for key in self.features
        }
        self._new_stats.append(episode_stats)
        record: dict[str, Any] = {
            "episode_index": episode,
            "tasks": [task],
            "length": length,
            "data/chunk_index": chunk,
            "data/file_index": file,
            "dataset_from_index": self.frame_index,
            "dataset_to_index": self.frame_index + length,
            "meta/episodes/chunk_index": self._meta_at[0],
            "meta/episodes/file_index": self._meta_at[1],
            **{name: row.get(name) for name in self.episode_columns},
        }
        for key, values in episode_stats.items():
            for stat, array in values.items():
                record[f"stats/{key}/{stat}"] = array.tolist()
        self._episodes.append(record)
        self.episode_index += 1
        self.frame_index += length
        return episode

    def _data_file(self, incoming_bytes: int) -> tuple[int, int]:
        limit = DATA_FILES_SIZE_IN_MB * 1024 * 1024
        if self._writer is not None and self._written_bytes + incoming_bytes > limit:
            self._writer.close()
            self._writer = None
            self._data_at = _next_file(*self._data_at)
        if self._writer is None:
            chunk, file = self._data_at
            path = self.root / DATA_PATH.format(chunk_index=chunk, file_index=file)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pq.ParquetWriter(path, self._schema, **DATA_FILE_OPTIONS)
            self._written_bytes = 0
        return self._data_at

    def close(self) -> dict[str, Any]:
        """Write the episodes file, tasks, stats and info; returns ``info.json``'s content."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        meta = self.root / "meta"
        meta.mkdir(parents=True, exist_ok=True)
        if self._episodes:
            chunk, file = self._meta_at
            path = self.root / EPISODES_PATH.format(chunk_index=chunk, file_index=file)
            path.parent.mkdir(parents=True, exist_ok=True)
            columns = {
                f.name: pa.array([e.get(f.name) for e in self._episodes], type=f.type)
                for f in self._episode_schema
            }
            pq.write_table(pa.table(columns, schema=self._episode_schema), path)
        tasks_tmp = meta / ".tasks.parquet.tmp"
        pq.write_table(_tasks_table(self.tasks), tasks_tmp)
        tasks_tmp.replace(meta / "tasks.parquet")
        parts: list[Mapping[str, statistics.Stats]] = []
        if self.old_stats:
            parts.append(self.old_stats)
        parts += self._new_stats
        if parts:
            write_json(meta / "stats.json", statistics.to_json(statistics.aggregate_all(parts)))
        info = self.info()
        write_json(meta / "info.json", info)
        self._episodes, self._new_stats = [], []
        return info

    def info(self) -> dict[str, Any]:
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": self.episode_index,
            "total_frames": self.frame_index,
            "total_tasks": len(self.tasks),
            "chunks_size": CHUNKS_SIZE,
            "data_files_size_in_mb": DATA_FILES_SIZE_IN_MB,
            "video_files_size_in_mb": VIDEO_FILES_SIZE_IN_MB,
            "fps": int(self.fps) if float(self.fps).is_integer() else self.fps,
            "splits": {"train": f"0:{self.episode_index}"},
            "data_path": DATA_PATH,
            "video_path": None,
            "features": self.features,
            **self.info_extra,
        }


def _plain(value: object) -> object:
    """A features dict compared as JSON (tuples and lists alike)."""
    return json.loads(json.dumps(value))
