"""``twin export lerobot`` of recordings whose ``/joints`` channels hold joint-state blocks.

* The export of a block recording writes the frames its copy as the recorder wrote it
  before the blocks (a JSON message per state beside its raw frame,
  :func:`tests.dataset.copies.legacy_copy`) gives, read the old way (raw frames in bulk,
  held against the JSON).
* A block that does not decode (garbage, or a well-formed map whose columns do not hold
  what it says) is skipped with one warning line naming the file, the topic and why; the
  rest of the recording is exported, that robot's other states included.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from mcap.reader import make_reader

from tests.dataset.copies import damaged_copy
from twin.dataset.export import Options, export
from twin.dataset.source import layout, peek, read_part
from twin.record.chunks import chunk_catalog
from twin.record.joint_blocks import decode_block


def tables(root: Path) -> dict[str, pa.Table]:
    """Each dataset's frames, and its episodes (``<name>/episodes``)."""
    out: dict[str, pa.Table] = {}
    for info in sorted(root.glob("*/meta/info.json")):
        dataset = info.parent.parent
        data = sorted((dataset / "data").glob("chunk-*/file-*.parquet"))
        out[dataset.name] = pa.concat_tables(pq.read_table(p) for p in data)
        meta = sorted((dataset / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        out[f"{dataset.name}/episodes"] = pa.concat_tables(pq.read_table(p) for p in meta)
    return out


def test_an_export_of_blocks_is_the_export_of_its_json_copy(
    tmp_path: Path, raw_fall_recording: Path, legacy_fall_recording: Path
) -> None:
    blocks, legacy = tmp_path / "blocks", tmp_path / "legacy"
    first = export(Options([raw_fall_recording], blocks, jobs=2))
    second = export(Options([legacy_fall_recording], legacy, jobs=2))
    assert not first.warnings and not second.warnings
    got, want = tables(blocks), tables(legacy)
    assert set(got) == set(want) and "pooled" in got and len(got) == 8
    for name, table in got.items():
        other = want[name]
        assert table.num_rows == other.num_rows > 0, name
        for column in table.column_names:
            if column == "source_recording":  # the two files' names
                continue
            # equal values, column by column (a block's 0.0 is the JSON's -0.0)
            assert table[column].to_pylist() == other[column].to_pylist(), (name, column)


def block_rows(path: Path, topic: str) -> list[tuple[int, bytes]]:
    """Each block of ``topic``: its log time and data, in file order."""
    with path.open("rb") as stream:
        reader = make_reader(stream)
        return [
            (m.log_time, m.data)
            for _, _, m in reader.iter_messages(topics=[topic], log_time_order=False)
        ]


def robot_logs(path: Path, robot_id: str) -> list[int]:
    plan = layout(path, 1)
    part = read_part(path, plan.spans[0], {robot_id}, plan.complete)
    logs: list[int] = np.concatenate(part.robots[robot_id].joint_log_ns).tolist()
    return logs


def test_a_damaged_block_is_skipped_with_a_warning(tmp_path: Path, fall_recording: Path) -> None:
    kestrel, tessel = (
        block_rows(fall_recording, "/joints/K1-01"),
        block_rows(fall_recording, "/joints/T3-02"),
    )
    assert len(kestrel) >= 4 and len(tessel) >= 4
    forged: dict[str, Any] = msgspec.msgpack.decode(tessel[2][1])
    forged["position"]["data"] = forged["position"]["data"][:-3]  # a column cut short
    damaged = damaged_copy(
        fall_recording,
        tmp_path / "damaged.mcap",
        {
            ("/joints/K1-01", 0): b"\xc1 not a block",  # its first: the peek reads the next
            ("/joints/T3-02", 2): msgspec.msgpack.encode(forged),
        },
    )
    found = peek(damaged)
    assert found.names == peek(fall_recording).names and found.rate_hz["K1-01"] > 0
    # the robot's other states are all read, in order; the damaged block's are not
    lost = decode_block(kestrel[0][1]).log_time_ns.tolist()
    assert robot_logs(damaged, "K1-01") == robot_logs(fall_recording, "K1-01")[len(lost) :]
    lost = decode_block(tessel[2][1]).log_time_ns.tolist()
    whole = robot_logs(fall_recording, "T3-02")
    assert robot_logs(damaged, "T3-02") == [t for t in whole if t not in set(lost)]
    summary = export(Options([damaged], tmp_path / "ds", jobs=1))
    assert len(summary.warnings) == 2, summary.warnings
    kestrel_line, tessel_line = sorted(summary.warnings)
    start_ns = chunk_catalog(damaged).damage.start_ns
    assert start_ns is not None

    def at(log_ns: int) -> str:  # seconds into the recording, as the damage line says
        return f"t {(log_ns - start_ns) / 1e9:.2f} s"

    assert kestrel_line.startswith(f"damaged.mcap: /joints/K1-01: the block at {at(kestrel[0][0])}")
    assert "skipped (not a joint block" in kestrel_line
    assert tessel_line.startswith(f"damaged.mcap: /joints/T3-02: the block at {at(tessel[2][0])}")
    assert "skipped (position: " in tessel_line and "bytes of differences" in tessel_line
    episodes = tables(tmp_path / "ds")["pooled/episodes"].to_pylist()
    robots = {r["robot_id"] for r in episodes}
    assert {"K1-01", "T3-02"} <= robots and len(robots) == 8
