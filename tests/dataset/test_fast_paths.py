"""The export's fast paths give exactly what the plain ways give.

* :func:`twin.dataset.stats.feature_stats` takes its quantiles from one partition of the
  frames: every statistic is bit for bit what numpy's ``min``/``max``/``mean``/``std`` and
  ``np.quantile`` give (signed zeros, NaN, one frame, integer features included), and
  float32 frames give what their float64 copy gives;
* :func:`twin.dataset.source.zstd_records` decompresses and checks a chunk as
  :func:`twin.record.chunks.chunk_records` does, and gives None (so that function reads or
  explains it) for any chunk that does not check out;
* the frames' Parquet files are written without dictionaries and read back the same.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from twin.dataset.lerobot import DatasetWriter
from twin.dataset.source import zstd_records
from twin.dataset.stats import KEYS, QUANTILES, Stats, feature_stats
from twin.record.chunks import ChunkDamaged, chunk_catalog, chunk_records


def reference(values: npt.ArrayLike) -> Stats:
    """The statistics as numpy gives them, the definition the fast path must meet."""
    data = np.asarray(values, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    out: Stats = {
        "min": data.min(axis=0),
        "max": data.max(axis=0),
        "mean": data.mean(axis=0),
        "std": data.std(axis=0),
        "count": np.array([len(data)], dtype=np.float64),
    }
    for key, row in zip(
        QUANTILES, np.quantile(data, list(QUANTILES.values()), axis=0), strict=True
    ):
        out[key] = row
    return out


def same_bits(a: Stats, b: Stats) -> bool:
    return set(a) == set(b) == set(KEYS) and all(
        a[k].shape == b[k].shape and np.array_equal(a[k].view(np.uint64), b[k].view(np.uint64))
        for k in KEYS
    )


def test_feature_stats_are_numpys_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    for trial in range(600):
        frames = int(rng.integers(1, 40)) if trial % 3 else int(rng.integers(40, 2500))
        data = rng.standard_normal((frames, int(rng.integers(1, 6))))
        if trial % 4 == 0:  # ties, and 0.0 beside -0.0 (equals that sort in no set order)
            data = np.round(data, 1)
        if trial % 5 == 0:
            data = data.astype(np.float32).astype(np.float64)
        if trial % 7 == 0:
            data[:] = 0.0
        if trial % 11 == 0:
            data[int(rng.integers(0, frames))] = np.nan
        if trial % 13 == 0:
            data = data * 0.0 * np.sign(rng.standard_normal(data.shape))
        assert same_bits(feature_stats(data), reference(data)), trial
        assert same_bits(feature_stats(data[:, 0]), reference(data[:, 0])), trial
        narrow = data.astype(np.float32)
        assert same_bits(feature_stats(narrow), reference(narrow.astype(np.float64))), trial
        assert same_bits(feature_stats(np.arange(frames)), reference(np.arange(frames)))


def test_zstd_chunks_read_as_the_recording_reader_reads_them(fall_recording: Path) -> None:
    catalog = chunk_catalog(fall_recording)
    assert catalog.chunks
    with (
        fall_recording.open("rb") as stream,
        mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as data,
    ):
        records = [data[ref.offset : ref.offset + ref.length] for ref in catalog.chunks]
    for record in records:
        fast = zstd_records(record)
        assert fast is not None  # the twin records zstd chunks with a CRC
        assert fast == chunk_records(record)
    record = records[0]
    damaged = bytearray(record)
    damaged[-40] ^= 0xFF
    for bad in (record[:20], record[: len(record) // 2], bytes(damaged), b"\x05" + record[1:]):
        assert zstd_records(bad) is None
        with pytest.raises(ChunkDamaged):
            chunk_records(bad)


def test_frames_are_written_without_dictionaries(tmp_path: Path) -> None:
    names = ["a", "b", "c"]
    features = {"observation.state": {"dtype": "float32", "shape": [3], "names": names}}
    writer = DatasetWriter(
        tmp_path / "ds",
        robot_type="test",
        fps=50.0,
        features=features,
        episode_columns={"note": pa.string()},
    )
    state = np.random.default_rng(1).standard_normal((120, 3)).astype(np.float32)
    writer.add({"observation.state": state}, "task", {"note": "x"})
    info = writer.close()
    path = tmp_path / "ds" / info["data_path"].format(chunk_index=0, file_index=0)
    meta = pq.ParquetFile(path).metadata
    group = meta.row_group(0)
    assert not any(group.column(i).has_dictionary_page for i in range(group.num_columns))
    table = pq.read_table(path)
    assert table["observation.state"].to_pylist() == state.tolist()
    assert table["index"].to_pylist() == list(range(120))
