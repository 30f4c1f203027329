"""Damaged and cut recordings: read to the extent possible, said in one line, never a traceback.

The recording is the session's ``fall_recording`` (8 s of the emulated hall recorded by
``twin live --record``: T3-04 falls, T3-01 drops a part, failures recorded live). Each case
flips one byte inside a chunk's compressed data, or cuts the file, and runs the commands as
real ``twin`` processes. What each chunk holds is read independently with the ``mcap``
library's own reader from the undamaged file, so the failures expected after a damaged
chunk are known without the code under test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from mcap.reader import make_reader
from mcap.records import Chunk, Message
from mcap.stream_reader import StreamReader, breakup_chunk

from tests.helpers import ROOT, run_replay
from twin.failures.events import FailureEvent
from twin.record.chunks import ChunkRef, chunk_catalog
from twin.record.damage import Gap
from twin.record.recording import RecordingError, open_recording
from twin.record.replay_source import ReplaySource
from twin.record.schemas import EventMsg

_NS = 1_000_000_000


@dataclass(frozen=True)
class Whole:
    """The undamaged recording: its bytes, chunks, start, and failure ids chunk by chunk."""

    path: Path
    data: bytes
    chunks: list[ChunkRef]
    start_ns: int  # the twin's start: times in warnings count from it
    ids: list[str]  # every failure id, as `twin failures --json` lists them
    ids_in: list[set[str]]  # per chunk (file order), the failure ids its /events hold


def _ids_per_chunk(path: Path) -> list[set[str]]:
    """Failure ids per chunk, read with mcap's StreamReader and breakup_chunk only."""
    out: list[set[str]] = []
    with path.open("rb") as stream:
        summary = make_reader(stream).get_summary()
        assert summary is not None
        events = {i for i, c in summary.channels.items() if c.topic == "/events"}
        for index in sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset):
            stream.seek(index.chunk_start_offset)
            chunk = next(StreamReader(stream, skip_magic=True, emit_chunks=True).records)
            assert isinstance(chunk, Chunk)
            ids = set()
            for record in breakup_chunk(chunk, validate_crc=True):
                if isinstance(record, Message) and record.channel_id in events:
                    event = msgspec.json.decode(record.data, type=EventMsg)
                    if event.kind == "failure":
                        ids.add(msgspec.json.decode(event.detail, type=FailureEvent).id)
            out.append(ids)
    return out


def twin(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``twin ARGS`` as a child process (no display: off-screen where it renders)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "twin", *args],
        env=env, capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip


def together(*commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Several ``twin`` commands at once (each waits on its child process)."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: twin(*args), commands))


def failures(path: Path) -> tuple[dict[str, object], list[str]]:
    """`twin failures PATH --json`: the report, and its stderr lines (exit 0 asserted)."""
    done = twin("failures", str(path), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr.splitlines()


@pytest.fixture(scope="module")
def whole(fall_recording: Path) -> Whole:
    catalog = chunk_catalog(fall_recording)
    assert catalog.complete and len(catalog.chunks) >= 6
    report, lines = failures(fall_recording)
    assert lines == [] and report["warning"] == "" and report["source"] == "recorded"
    events = report["events"]
    assert isinstance(events, list)
    start = int(open_recording(fall_recording).metadata["twin"]["start_time_ns"])
    ids_in = _ids_per_chunk(fall_recording)
    assert set().union(*ids_in) == {e["id"] for e in events}
    return Whole(
        fall_recording,
        fall_recording.read_bytes(),
        catalog.chunks,
        start,
        [e["id"] for e in events],
        ids_in,
    )


def t_text(whole: Whole, t_ns: int) -> str:
    """A log time as the warning writes it: seconds from the twin's start."""
    return f"{(t_ns - whole.start_ns) / _NS:.2f}"


def middle_chunk(whole: Whole) -> int:
    """An inner chunk that holds failures, with failures in later chunks too (the one that
    holds most of them)."""

    def fit(k: int) -> tuple[bool, int]:
        later = set().union(*whole.ids_in[k + 1 :])
        return (bool(whole.ids_in[k]) and bool(later), len(whole.ids_in[k]))

    return max(range(1, len(whole.chunks) - 1), key=fit)


def flipped(whole: Whole, k: int, folder: Path) -> Path:
    """The recording with one byte flipped in the middle of chunk ``k``'s compressed data."""
    ref = whole.chunks[k]
    data = bytearray(whole.data)
    data[ref.offset + ref.length // 2] ^= 0x5A
    path = folder / f"flipped-{k}.mcap"
    path.write_bytes(bytes(data))
    return path


def cut(whole: Whole, at: int, folder: Path) -> Path:
    path = folder / f"cut-{at}.mcap"
    path.write_bytes(whole.data[:at])
    return path


def only_warning(lines: list[str], command: str) -> str:
    """The one stderr line, a warning of ``command`` (no traceback, nothing else)."""
    assert len(lines) == 1, "\n".join(lines)
    assert lines[0].startswith(f"twin {command}: warning: "), lines[0]
    return lines[0]


def every_robot_seen_ns(whole: Whole) -> int:
    """Log time by which every robot has sent a joint state (its first ``/joints/*`` block is
    logged at its first state's receive time)."""
    first: dict[str, int] = {}
    with whole.path.open("rb") as stream:
        for _, channel, message in make_reader(stream).iter_messages():
            if channel.topic.startswith("/joints/") and channel.topic not in first:
                first[channel.topic] = message.log_time
    assert first
    return max(first.values())


def replay_at(path: Path, t_ns: int) -> float:
    """The replay timeline's second for log time ``t_ns`` (it starts at the first message)."""
    source = ReplaySource(open_recording(path))
    try:
        t_s = max(0.0, min(source.duration_s, (t_ns - source.start_ns) / _NS))
        return math.floor(t_s * 1000) / 1000  # as written with 3 decimals, not past the end
    finally:
        source.close()


@pytest.mark.parametrize("which", ["first", "middle", "last"])
def test_a_flipped_byte_loses_one_chunk_and_the_rest_is_read(
    whole: Whole, which: str, tmp_path: Path
) -> None:
    k = {"first": 0, "middle": middle_chunk(whole), "last": len(whole.chunks) - 1}[which]
    ref = whole.chunks[k]
    path = flipped(whole, k, tmp_path)
    said = (
        f"skipped 1 chunk (t {t_text(whole, ref.start_ns)}..{t_text(whole, ref.end_ns)} s "
        f"at byte {ref.offset}: "
    )
    lost = f"{ref.messages} messages lost"

    clip, out = tmp_path / "clip.mp4", tmp_path / "resim.mcap"
    clip_at = replay_at(path, ref.start_ns if which != "first" else whole.chunks[1].start_ns)
    # resim from where every robot has a state: after the damaged chunk (in the last one)
    resim_at = replay_at(path, (ref.start_ns + ref.end_ns) // 2)
    if which != "last":
        resim_at = replay_at(path, whole.chunks[k + 1].start_ns) + 0.3
    listed, clipped, resimulated = together(
        ["failures", str(path), "--json"],
        ["replay", str(path), "--clip", str(clip), "--at", f"{clip_at:.3f}", "--after", "0.2",
         "--size", "160x120"],
        ["resim", str(path), "--at", f"{resim_at:.3f}", "--seconds", "0.2", "--record", str(out)],
    )  # fmt: skip

    assert listed.returncode == 0, listed.stderr
    line = only_warning(listed.stderr.splitlines(), "failures")
    assert said in line and lost in line
    assert line.startswith(f"twin failures: warning: {path}: damaged recording: skipped 1 chunk")
    assert line.endswith("; read the rest")
    report = json.loads(listed.stdout)
    assert report["warning"] == line.removeprefix("twin failures: warning: ")
    damage = report["damage"]
    (skipped,) = damage["skipped_chunks"]
    assert (skipped["offset"], skipped["start_ns"], skipped["end_ns"], skipped["messages"]) == (
        ref.offset, ref.start_ns, ref.end_ns, ref.messages,
    )  # fmt: skip
    assert damage["cut"] is None
    found = [e["id"] for e in report["events"]]
    assert found == [i for i in whole.ids if i not in whole.ids_in[k]]
    after = set().union(*whole.ids_in[k + 1 :])
    assert [i for i in found if i in after] == [i for i in whole.ids if i in after]
    if which == "middle":
        assert whole.ids_in[k] and after  # a chunk with failures, and failures after it

    assert clipped.returncode == 0, clipped.stderr
    assert said in only_warning(clipped.stderr.splitlines(), "replay")
    assert f"clip: {clip}" in clipped.stdout and clip.stat().st_size > 0

    assert resimulated.returncode == 0, resimulated.stderr
    assert said in only_warning(resimulated.stderr.splitlines(), "resim")
    assert "resimulated 0.2 s" in resimulated.stdout and open_recording(out).complete


def test_a_damaged_chunk_in_lessons_and_export(whole: Whole, tmp_path: Path) -> None:
    k = middle_chunk(whole)
    path = flipped(whole, k, tmp_path)
    said = f"skipped 1 chunk (t {t_text(whole, whole.chunks[k].start_ns)}.."
    learnt, exported = together(
        ["lessons", "learn", str(path), "--lessons", str(tmp_path / "l.db"), "--json"],
        ["export", "lerobot", str(path), "--out", str(tmp_path / "ds"), "--json"],
    )
    assert learnt.returncode == 0, learnt.stderr
    assert said in only_warning(learnt.stderr.splitlines(), "lessons learn")
    assert isinstance(json.loads(learnt.stdout), list)
    assert exported.returncode == 0, exported.stderr
    (line,) = [x for x in exported.stderr.splitlines() if "damaged recording" in x]
    assert said in line and "Traceback" not in exported.stderr
    assert json.loads(exported.stdout)["recorded_s"] > 0


@pytest.mark.parametrize("where", ["inside a chunk", "between records", "inside its summary"])
def test_a_cut_file_says_where_and_reads_up_to_it(whole: Whole, where: str, tmp_path: Path) -> None:
    k = middle_chunk(whole)
    if where == "inside a chunk":
        # resim needs every robot's state before its start: a cut after all have sent one
        seen = every_robot_seen_ns(whole) + _NS // 20
        while k < len(whole.chunks) - 1 and max(c.end_ns for c in whole.chunks[:k]) <= seen:
            k += 1
    at = {
        "inside a chunk": whole.chunks[k].offset + whole.chunks[k].length // 2,
        "between records": whole.chunks[k].offset,
        "inside its summary": len(whole.data) - 100,
    }[where]
    path = cut(whole, at, tmp_path)
    kept = k if where != "inside its summary" else len(whole.chunks)
    until = max(c.end_ns for c in whole.chunks[:kept])
    said = f"cut at byte {at} ({where}), whole up to t {t_text(whole, until)} s"

    report, lines = failures(path)
    line = only_warning(lines, "failures")
    assert line == f"twin failures: warning: {path}: cut recording: {said}; read up to the cut"
    damage = report["damage"]
    assert isinstance(damage, dict) and damage["skipped_chunks"] == []
    record_at = {"inside a chunk": whole.chunks[k].offset, "between records": at}
    assert damage["cut"] == {
        "at_byte": at,
        "record_offset": record_at.get(where, damage["cut"]["record_offset"]),
        "where": where,
        "whole_until_ns": until,
    }
    events = report["events"]
    assert isinstance(events, list)
    before = set().union(*whole.ids_in[:kept])
    assert [e["id"] for e in events] == [i for i in whole.ids if i in before]

    if where != "inside a chunk":
        return
    at_s = replay_at(path, max(until - _NS // 5, every_robot_seen_ns(whole) + _NS // 20))
    clip = tmp_path / "clip.mp4"
    clipped, resimulated = together(
        ["replay", str(path), "--clip", str(clip), "--at", f"{at_s:.3f}", "--after", "0.2",
         "--size", "160x120"],
        ["resim", str(path), "--at", f"{at_s:.3f}", "--seconds", "0.2",
         "--record", str(tmp_path / "resim.mcap")],
    )  # fmt: skip
    assert clipped.returncode == 0, clipped.stderr
    assert said in only_warning(clipped.stderr.splitlines(), "replay")
    assert resimulated.returncode == 0, resimulated.stderr
    assert said in only_warning(resimulated.stderr.splitlines(), "resim")


def test_nothing_readable_is_an_error_of_one_line(whole: Whole, tmp_path: Path) -> None:
    first = whole.chunks[0]
    every = bytearray(whole.data)
    for ref in whole.chunks:
        every[ref.offset + ref.length // 2] ^= 0x5A
    all_flipped = tmp_path / "all-flipped.mcap"
    all_flipped.write_bytes(bytes(every))
    cases = {
        cut(whole, first.offset + first.length // 2, tmp_path): "no whole chunk before it",
        all_flipped: f"skipped {len(whole.chunks)} chunks",
    }
    for path, why in cases.items():
        done = twin("failures", str(path))
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith(f"twin failures: {path}: no readable messages (") and why in line
        assert done.stdout == ""
        done = run_replay(str(path), "--clip", str(tmp_path / "x.mp4"), cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith(f"twin replay: {path}: no readable messages (") and why in line
        with pytest.raises(RecordingError, match="no readable messages"):
            list(open_recording(path).iter_messages())


def test_a_stream_pass_resynchronises_on_the_next_chunk(whole: Whole, tmp_path: Path) -> None:
    k = middle_chunk(whole)
    ref, following = whole.chunks[k], whole.chunks[k + 1]
    summary_at = len(whole.data) - 100  # no usable summary: the file is read as a stream
    expected = sum(c.messages or 0 for c in whole.chunks) - (ref.messages or 0)
    for damage in ("opcode", "length"):
        data = bytearray(whole.data[:summary_at])
        if damage == "opcode":
            data[ref.offset] = 0xEE  # no such record
        else:
            data[ref.offset + 1 : ref.offset + 9] = (1 << 40).to_bytes(8, "little")
        path = tmp_path / f"{damage}.mcap"
        path.write_bytes(bytes(data))
        recording = open_recording(path)
        assert not recording.complete
        assert sum(1 for _ in recording.iter_messages()) == expected, damage
        report = recording.damage
        assert report.gaps == [Gap(ref.offset, following.offset)], damage
        assert report.cut is not None and report.cut.where == "inside its summary"
        line = report.line()
        assert f"unreadable bytes {ref.offset}..{following.offset}" in line, line
        assert [c.offset for c in recording.catalog.chunks] == [
            c.offset for c in whole.chunks if c.offset != ref.offset
        ]
