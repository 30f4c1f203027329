"""``twin export lerobot`` on real emulator recordings of all three manufacturers.

The recordings are the session's (``fall_recording``: T3-04 falls at 4 s and T3-01 loses its
grip; ``orca_drop_recording``: H2-02 loses its grip). What an export wrote is read back with
pyarrow and compared with the recording as the independent ``mcap`` reader sees it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from mcap.reader import make_reader

from robots import CANONICAL_JOINTS
from twin.dataset.export import MANIFEST, ExportError, Options, export
from twin.dataset.source import peek
from twin.dataset.stats import KEYS
from twin.record.joint_blocks import is_block, joint_states

FPS = 50.0


def twin(*args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twin", *args],
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, fall_recording: Path) -> Path:
    out = tmp_path_factory.mktemp("export") / "ds"
    result = twin("export", "lerobot", str(fall_recording), "--out", str(out), "--jobs", "2")
    assert result.returncode == 0, result.stderr
    return out


def episodes(root: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


def frames(root: Path) -> Any:
    import pyarrow as pa

    return pa.concat_tables(
        pq.read_table(p) for p in sorted((root / "data").glob("chunk-*/file-*.parquet"))
    )


def recorded(path: Path, robot_id: str) -> dict[str, Any]:
    """A robot's joint states and heartbeats as the mcap reader gives them."""
    stamps, logs, positions, names = [], [], [], None
    beats: list[tuple[int, dict[str, Any]]] = []
    with path.open("rb") as stream:
        topics = [f"/joints/{robot_id}", f"/heartbeat/{robot_id}"]
        for schema, channel, message in make_reader(stream).iter_messages(topics=topics):
            if channel.topic.startswith("/joints/"):
                block = is_block(schema.name if schema else "", channel.message_encoding)
                for log_ns, state in joint_states(message.data, message.log_time, block):
                    names = state.name
                    stamps.append(state.stamp_ns)
                    logs.append(log_ns)
                    positions.append(state.position)
            else:
                beats.append((message.log_time, json.loads(message.data)))
    stamp = np.array(stamps, dtype=np.int64)
    t = stamp + int(np.median(np.array(logs, dtype=np.int64) - stamp))
    order = np.argsort(t, kind="stable")
    return {
        "names": names, "t_ns": t[order], "position": np.array(positions)[order],
        "beats": sorted(beats, key=lambda b: b[0]),
    }  # fmt: skip


def recorded_failures(path: Path) -> list[dict[str, Any]]:
    out = []
    with path.open("rb") as stream:
        for _, _, message in make_reader(stream).iter_messages(topics=["/events"]):
            event = json.loads(message.data)
            if event["kind"] == "failure":
                out.append(json.loads(event["detail"]))
    return out


def test_the_v3_layout_per_embodiment_and_pooled(exported: Path) -> None:
    manifest = json.loads((exported / MANIFEST).read_text())
    assert sorted(manifest["datasets"]) == ["kestrel_k1", "orca_h2", "pooled", "tessel_t3"]
    for name in manifest["datasets"]:
        root = exported / name
        info = json.loads((root / "meta" / "info.json").read_text())
        assert info["codebase_version"] == "v3.0"
        assert info["fps"] == 50
        assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
        for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
            assert info["features"][key]["shape"] == [1]
        # what a LeRobot policy's normaliser takes: float32 observations and actions (bool
        # masks there failed LeRobot 0.4.4's and 0.6.1's NormalizerProcessorStep)
        policy_inputs = {k: f for k, f in info["features"].items() if k.split(".")[0] in (
            "observation", "action")}  # fmt: skip
        assert {k: f["dtype"] for k, f in policy_inputs.items()} == dict.fromkeys(
            policy_inputs, "float32"
        )
        table = frames(root)
        schema = table.schema
        assert set(schema.names) == set(info["features"])
        for key, feature in info["features"].items():
            kind = schema.field(key).type
            if feature["shape"] == [1]:
                assert not hasattr(kind, "list_size"), key
            else:
                assert kind.list_size == feature["shape"][0] == len(feature["names"]), key
        rows = episodes(root)
        assert info["total_episodes"] == len(rows) and info["total_frames"] == table.num_rows
        assert [r["episode_index"] for r in rows] == list(range(len(rows)))
        # episodes tile the frames in order; the global index runs over them
        at = 0
        for row in rows:
            assert (row["dataset_from_index"], row["dataset_to_index"]) == (at, at + row["length"])
            at += row["length"]
            for key in info["features"]:
                assert {f"stats/{key}/{stat}" for stat in KEYS} <= set(row)
        assert table["index"].to_pylist() == list(range(table.num_rows))
        stats = json.loads((root / "meta" / "stats.json").read_text())
        assert set(stats) == set(info["features"])
        assert stats["index"]["count"] == [table.num_rows]
        tasks = pq.read_table(root / "meta" / "tasks.parquet")
        assert b"pandas" in tasks.schema.metadata  # the task strings are the pandas index
        assert set(tasks["__index_level_0__"].to_pylist()) == {t for r in rows for t in r["tasks"]}
        card = (root / "README.md").read_text()
        assert "Hours per manufacturer" in card and "fall_recording" not in card
    pooled = json.loads((exported / "pooled" / "meta" / "info.json").read_text())
    assert pooled["features"]["observation.state"]["names"] == list(CANONICAL_JOINTS)
    assert "linear interpolation" in pooled["hall_twin"]["resampling"]
    modality = json.loads((exported / "pooled" / "meta" / "modality.json").read_text())
    assert set(modality["state"]) == {
        "left_arm", "right_arm", "left_leg", "right_leg", "spine", "neck", "hands"
    }  # fmt: skip
    left_arm = modality["state"]["left_arm"]
    assert CANONICAL_JOINTS[left_arm["start"] : left_arm["end"]][0] == "left_shoulder_pitch"
    card = (exported / "pooled" / "README.md").read_text()
    for maker in ("Kestrel Robotics", "Orca Mechatronics", "Tessel Humanoids"):
        assert maker in card
    assert "fall.mcap" in card


def test_a_frame_holds_the_recorded_values_within_interpolation(
    exported: Path, fall_recording: Path
) -> None:
    table = frames(exported / "kestrel_k1")
    rows = [r for r in episodes(exported / "kestrel_k1") if r["robot_id"] == "K1-01"]
    source = recorded(fall_recording, "K1-01")
    info = json.loads((exported / "kestrel_k1" / "meta" / "info.json").read_text())
    assert info["features"]["observation.state"]["names"] == source["names"]
    t = source["t_ns"]
    checked = 0
    for row in rows:
        state = np.array(table["observation.state"].to_pylist()[row["dataset_from_index"]:
                                                             row["dataset_to_index"]])  # fmt: skip
        for k in range(0, row["length"], 7):
            at = row["start_ns"] + round(k * 1e9 / FPS)
            right = int(np.searchsorted(t, at, side="right"))
            left = max(right - 1, 0)
            nxt = min(right, len(t) - 1)
            low = np.minimum(source["position"][left], source["position"][nxt]) - 1e-5
            high = np.maximum(source["position"][left], source["position"][nxt]) + 1e-5
            assert np.all((state[k] >= low) & (state[k] <= high)), (row["episode_index"], k)
            checked += 1
    assert checked > 50


def test_masks_per_manufacturer(exported: Path) -> None:
    root = exported / "pooled"
    info = json.loads((root / "meta" / "info.json").read_text())
    vendor = info["features"]["observation.vendor_state"]["names"]
    assert {"orca_h2:L_GRIP", "orca_h2:R_GRIP"} <= set(vendor)
    table = frames(root)
    rows = episodes(root)
    by_model = {r["model"]: r for r in rows}
    canonical = list(CANONICAL_JOINTS)
    for model, row in by_model.items():
        first = row["dataset_from_index"]
        mask = np.array(table["state_mask"][first].as_py())
        vmask = np.array(table["vendor_mask"][first].as_py())
        state = np.array(table["observation.state"][first].as_py())
        if model == "orca_h2":
            assert vmask[vendor.index("orca_h2:L_GRIP")] and vmask[vendor.index("orca_h2:R_GRIP")]
            assert mask.sum() == 30
        else:
            assert not vmask.any()
        if model == "tessel_t3":
            assert mask.sum() == 23
            for joint in ("neck_yaw", "spine_pitch", "left_wrist_pitch"):
                assert not mask[canonical.index(joint)]
                assert state[canonical.index(joint)] == 0.0
        if model == "kestrel_k1":
            assert mask.sum() == 27 and not mask[canonical.index("left_wrist_roll")]


def test_episodes_are_the_task_cycles(exported: Path, fall_recording: Path) -> None:
    rows = sorted(
        (r for r in episodes(exported / "pooled") if r["robot_id"] == "T3-01"),
        key=lambda r: r["start_ns"],
    )
    beats = recorded(fall_recording, "T3-01")["beats"]
    changes = [
        (log_ns, body.get("cycle", 0))
        for i, (log_ns, body) in enumerate(beats)
        if i == 0 or body.get("cycle", 0) != beats[i - 1][1].get("cycle", 0)
    ]
    assert len(changes) >= 2, "the recording holds at least one cycle restart"
    assert [r["cycle"] for r in rows] == [c for _, c in changes]
    for row, (log_ns, _) in zip(rows[1:], changes[1:], strict=True):
        assert abs(row["start_ns"] - log_ns) <= 1e9 / FPS
    assert rows[0]["complete"] is False and rows[-1]["complete"] is False
    assert all(r["tasks"] == ["pick and place at station " + r["tasks"][0].rsplit(" ", 1)[-1]]
               for r in rows)  # fmt: skip


def test_an_injected_fall_is_a_failed_episode(exported: Path, fall_recording: Path) -> None:
    falls = [f for f in recorded_failures(fall_recording) if f["kind"] == "fall"]
    assert falls and falls[0]["robot_id"] == "T3-04"
    rows = [r for r in episodes(exported / "pooled") if r["robot_id"] == "T3-04"]
    hit = [r for r in rows if r["start_ns"] <= falls[0]["stamp_ns"] <= r["end_ns"]]
    assert len(hit) == 1
    assert hit[0]["outcome"] == "failure" and hit[0]["success"] is False
    assert "fall" in hit[0]["failures"] and hit[0]["incidents"]
    before = [r for r in rows if r["end_ns"] < falls[0]["stamp_ns"] - 1e9]
    assert before
    for row in before:  # a failure exactly where failure events are
        assert row["outcome"] == ("failure" if row["failures"] else "success"), row


def test_appending_adds_episodes_and_updates_the_stats(
    tmp_path: Path, fall_recording: Path, orca_drop_recording: Path
) -> None:
    out = tmp_path / "ds"
    first = export(Options([fall_recording], out, jobs=1))
    before = {
        p.relative_to(out): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in out.rglob("*.parquet") if "data" in p.parts
    }  # fmt: skip
    second = export(Options([orca_drop_recording], out, jobs=2))
    pooled = out / "pooled"
    info = json.loads((pooled / "meta" / "info.json").read_text())
    added = first.recordings[0]["episodes"] + second.recordings[0]["episodes"]
    assert info["total_episodes"] == added == len(episodes(pooled))
    assert info["total_frames"] == frames(pooled).num_rows
    stats = json.loads((pooled / "meta" / "stats.json").read_text())
    assert stats["observation.state"]["count"] == [info["total_frames"]]
    assert stats["index"]["max"] == [info["total_frames"] - 1]
    for path, digest in before.items():  # the first export's files are untouched
        assert hashlib.sha256((out / path).read_bytes()).hexdigest() == digest
    assert (pooled / "meta" / "episodes" / "chunk-000" / "file-001.parquet").exists()
    names = [r["name"] for r in json.loads((out / MANIFEST).read_text())["recordings"]]
    assert names == [fall_recording.name, orca_drop_recording.name]
    sources = {r["source_recording"] for r in episodes(pooled)}
    assert sources == {fall_recording.name, orca_drop_recording.name}
    drop = [r for r in episodes(pooled) if r["robot_id"] == "H2-02" and r["outcome"] == "failure"]
    assert drop and drop[0]["source_recording"] == orca_drop_recording.name
    assert "grasp_dropped" in drop[0]["failures"]
    with pytest.raises(ExportError, match="already exported"):
        export(Options([orca_drop_recording], out, jobs=1))
    assert not list(tmp_path.glob(".ds.*"))


def test_an_append_keeps_the_pooled_vendor_joints_or_names_the_new_ones(
    tmp_path: Path, fall_recording: Path, orca_drop_recording: Path
) -> None:
    out = tmp_path / "ds"
    export(Options([fall_recording], out, jobs=1))  # the whole hall: Orca's grippers included
    info_path = out / "pooled" / "meta" / "info.json"
    vendor = json.loads(info_path.read_text())["features"]["observation.vendor_state"]["names"]
    assert vendor and all(name.startswith("orca_h2:") for name in vendor)
    # a recording's robots without vendor-only joints append to it (masked off)
    export(Options([orca_drop_recording], out, robots=["K1-01"], jobs=1))
    info = json.loads(info_path.read_text())
    assert info["features"]["observation.vendor_state"]["names"] == vendor
    table = frames(out / "pooled")
    added = table.filter(pc.equal(table["episode_index"], info["total_episodes"] - 1))
    assert added.num_rows > 0
    assert not any(any(row) for row in added["vendor_mask"].to_pylist())

    kestrel_only = tmp_path / "kestrel"
    export(Options([fall_recording], kestrel_only, robots=["K1-01"], jobs=1))
    with pytest.raises(ExportError) as refused:
        export(Options([orca_drop_recording], kestrel_only, jobs=1))
    line = str(refused.value)
    assert line.startswith(f"{kestrel_only}: ") and "orca_h2:" in line and "new folder" in line
    assert ".staging" not in line
    assert not list(tmp_path.glob(".kestrel.*"))


def test_bad_inputs_one_line_exit_2_nothing_left(tmp_path: Path, fall_recording: Path) -> None:
    from scenes import load_scene
    from twin.record.recorder import Recorder

    def refused(*args: str) -> str:
        result = twin("export", "lerobot", *args)
        assert result.returncode == 2, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        return lines[0]

    out = tmp_path / "out"
    # the rate is measured, never above what the gateways send (Tessel 100 Hz, Orca 200, Kestrel
    # 500), though a busy machine's emulator may send less: a gateway's bursts are not its rate
    rates = peek(fall_recording).rate_hz
    nominal_hz = {"T3": 100.0, "H2": 200.0, "K1": 500.0}
    for robot_id, rate in rates.items():
        assert 0.3 * nominal_hz[robot_id[:2]] < rate <= 1.03 * nominal_hz[robot_id[:2]], rates
    line = refused(str(fall_recording), "--out", str(out), "--fps", "150")
    found = re.search(r"--fps 150 is above the source rate of (\S+) in \S+ \((\d+) Hz\)", line)
    suggested = re.search(r"use --fps (\d+) or lower", line)
    assert found and suggested, line
    assert abs(int(found.group(2)) - rates[found.group(1)]) <= 1
    assert int(suggested.group(1)) <= rates[found.group(1)] < 150 / 1.02
    assert not out.exists()
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not a recording at all")
    assert "not an MCAP file" in refused(str(junk), "--out", str(out))
    scene = load_scene()
    empty = tmp_path / "no_joints.mcap"
    with Recorder(empty, scene, "name: hall\n", twin_version="test") as recorder:
        recorder.event("monitors", "twin", "failure detection on", 1)
    assert "no joint channels" in refused(str(empty), "--out", str(out))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    line = refused(str(fall_recording), "--out", str(other))
    assert "holds something other than a hall-twin export" in line
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    assert "not in the recordings" in refused(
        str(fall_recording), "--out", str(out), "--robots", "X9-99"
    )
    line = refused(str(fall_recording), "--out", str(out), "--tasks", "juggling")
    assert "--tasks juggling: no episode" in line and "torque_wrench, walking" in line, line
    assert "a folder with no recordings" in refused(str(other), "--out", str(out))
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "staging" in p.name]


def test_a_folder_stands_for_the_recordings_in_it(tmp_path: Path, fall_recording: Path) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    os.link(fall_recording, folder / fall_recording.name)
    (folder / "notes.txt").write_text("not a recording")
    summary = export(Options([folder], tmp_path / "ds", robots=["K1-01"], jobs=1))
    assert [r["name"] for r in summary.recordings] == [fall_recording.name]
    assert summary.recordings[0]["episodes"] > 0


def test_a_cut_recording_uses_its_complete_chunks(tmp_path: Path, fall_recording: Path) -> None:
    cut = tmp_path / "cut.mcap"
    data = fall_recording.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "ds"
    result = twin("export", "lerobot", str(cut), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    (warning,) = [line for line in result.stderr.splitlines() if "cut recording" in line]
    assert f"cut at byte {int(len(data) * 0.6)}" in warning and "whole up to t" in warning
    summary = json.loads(result.stdout)
    assert summary["recordings"][0]["complete"] is False
    rows = episodes(out / "pooled")
    assert {r["model"] for r in rows} == {"kestrel_k1", "orca_h2", "tessel_t3"}
    assert summary["recorded_s"] > 0
    last = max(r["end_ns"] for r in rows) - min(r["start_ns"] for r in rows)
    assert 2e9 < last < 8e9 * 0.75  # about 60 % of the 8 s


def test_dataset_info_and_a_duckdb_query(exported: Path) -> None:
    result = twin("dataset", "info", str(exported), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary["per_manufacturer"]) == {
        "Kestrel Robotics", "Orca Mechatronics", "Tessel Humanoids"
    }  # fmt: skip
    assert summary["failures"] >= 2
    assert summary["per_task"]["squats"]["failure_kinds"].get("fall") == 1
    assert abs(sum(m["hours"] for m in summary["per_manufacturer"].values())
               - summary["hours"]) < 1e-5  # fmt: skip
    duckdb = pytest.importorskip("duckdb")
    query = (Path(__file__).parents[2] / "docs" / "dataset.md").read_text()
    sql = query.split("```sql\n", 1)[1].split("```", 1)[0].replace("ds/", f"{exported}/")
    got = duckdb.sql(sql).fetchall()
    rows = episodes(exported / "pooled")
    expect: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["manufacturer"], r["outcome"])
        expect[key] = expect.get(key, 0) + r["length"]
    assert {(m, o): int(n) for m, o, n, _ in got} == expect
    assert twin("dataset", "info", str(exported / "nothing")).returncode == 2


def test_lerobot_loads_the_pooled_dataset(exported: Path) -> None:
    """Only where ``pip install 'hall-twin[lerobot]'`` is (it pulls torch)."""
    lerobot_dataset = pytest.importorskip(
        "lerobot.datasets.lerobot_dataset", exc_type=ImportError
    )  # ImportError too: lerobot 0.5+ without its `dataset` extra
    dataset = lerobot_dataset.LeRobotDataset("local/pooled", root=exported / "pooled")
    assert dataset.num_episodes == len(episodes(exported / "pooled"))
    item = dataset[0]
    assert tuple(item["observation.state"].shape) == (32,)
    assert isinstance(item["task"], str)
    shutil.rmtree(exported / "pooled" / ".cache", ignore_errors=True)
