"""How many messages a second the recorder sustains, beside plain mcap writing.

Usage: ``python benchmarks/record.py [--messages N] [--repeat R] [--json]``. Uses
realistic accepted joint states (the default hall's robots: Kestrel packed float32, Orca
packed float64 degrees, Tessel MessagePack maps, in proportion to their rates).

- ``msgs_per_s``: the recorder as ``twin live --record`` runs it,
  :class:`twin.record.recorder_process.RecorderProcess`: the frames handed over as the
  mirror does (``frames`` per message, ``ship`` after every 128, the drain's batch), the
  worker process recording them at this process's priority; from the first message handed
  to the file closed. ``msgs_per_s_idle_priority``: the same at the priority ``twin live``
  gives the worker (SCHED_IDLE: only CPU time nothing else on the machine wants, so it
  says as much about the machine's other load as about the recorder).
  ``handoff_msgs_per_s``: what the handing over alone costs the mirror's thread.
- ``msgs_per_s_in_thread``: :meth:`twin.record.recorder.Recorder.sink` in this thread
  (with the values ingest has already checked, as a mirror sink gets them), and
  ``msgs_per_s_inline_compression`` the same with the writer's compression inline.
- ``raw_mcap_msgs_per_s``, the baseline: the same bytes written with a bare
  ``mcap.writer.Writer`` (two ``add_message`` calls a message: raw frame + JSON, no
  decoding). Also the parts: the recorder's writer alone
  (:class:`twin.record.mcap_writer.ChunkedMcapWriter`, same bytes as the baseline) and the
  canonical JSON alone, so a shortfall can be placed.

Every figure is the median of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mcap.writer import Writer

from benchmarks.machine import machine_info
from robots import get_model
from scenes import DEFAULT_SCENE, load_scene
from scenes.model import Scene
from sync.codecs import codec_for
from sync.protocol import Header, Kind, Received, pack_header, topic
from twin.record.mcap_writer import ChunkedMcapWriter
from twin.record.recorder import COMPRESSION, Recorder
from twin.record.recorder_process import RecorderProcess

TARGET_MSGS_PER_S = 50_000


def realistic_messages(scene: Scene, count: int, seed: int = 1) -> list[Received]:
    """``count`` joint states of the scene's robots, interleaved in proportion to rate."""
    rng = np.random.default_rng(seed)
    robots = list(scene.robots)
    rates = np.array([get_model(r.model).profile.rate_hz for r in robots])
    picks = rng.choice(len(robots), size=count, p=rates / rates.sum())
    seqs = dict.fromkeys(range(len(robots)), 0)
    start_ns = time.time_ns()
    out: list[Received] = []
    for i, index in enumerate(picks):
        robot = robots[int(index)]
        model = get_model(robot.model)
        codec = codec_for(model)
        n = len(codec.names)
        low = np.array([model.joint(name).lower for name in codec.names])
        high = np.array([model.joint(name).upper for name in codec.names])
        positions = rng.uniform(low, high)
        payload = codec.encode(positions, rng.normal(0, 1, n), rng.normal(0, 10, n))
        stamp_ns = start_ns + i * 20_000
        seq = seqs[int(index)]
        seqs[int(index)] = seq + 1
        header = Header(kind=Kind.JOINT_STATE, seq=seq, stamp_ns=stamp_ns, epoch=0x1234)
        wire_topic = topic(Kind.JOINT_STATE, robot.id)
        checked = codec.check(payload)  # ingest checks every joint state and passes this on
        received = Received(stamp_ns + 300_000, robot.id, header, wire_topic, payload, checked)
        out.append(received)
    return out


def _bench_sink(
    scene: Scene, messages: list[Received], folder: Path, *, background: bool = True
) -> tuple[float, int]:
    text = DEFAULT_SCENE.read_text(encoding="utf-8")
    path = folder / "sink.mcap"
    recorder = Recorder(path, scene, text, twin_version="bench", background=background)
    sink = recorder.sink
    started = time.perf_counter()
    for message in messages:
        sink(message)
    recorder.close()
    elapsed = time.perf_counter() - started
    return len(messages) / elapsed, path.stat().st_size


def _bench_process(
    scene: Scene, messages: list[Received], folder: Path, *, idle: bool = False
) -> tuple[float, float]:
    """(end-to-end msg/s, hand-over msg/s) of the recorder process; ``idle``: at the
    priority ``twin live`` gives it (SCHED_IDLE), else at this process's."""
    text = DEFAULT_SCENE.read_text(encoding="utf-8")
    path = folder / "process.mcap"
    frames = [
        (m.received_ns, [m.topic, pack_header(m.header.kind, m.header.seq, m.header.stamp_ns,
                                              m.header.epoch), m.payload])
        for m in messages
    ]  # fmt: skip
    priority = {} if idle else {"nice": 0, "idle": False}
    recorder = RecorderProcess(path, scene, text, twin_version="bench", **priority)  # type: ignore[arg-type]
    feed, ship = recorder.frames, recorder.ship
    started = time.perf_counter()
    handing = 0.0
    for start in range(0, len(frames), 128):
        began = time.perf_counter()
        for received_ns, message in frames[start : start + 128]:
            feed(received_ns, message)
        ship(time.monotonic_ns())
        handing += time.perf_counter() - began
    recorder.close()
    elapsed = time.perf_counter() - started
    if recorder.messages != len(messages):
        raise RuntimeError(f"the recorder process recorded {recorder.messages} of {len(messages)}")
    return len(messages) / elapsed, len(messages) / handing


def _pairs(scene: Scene, messages: list[Received]) -> list[tuple[bytes, bytes]]:
    recorder = Recorder(
        Path(tempfile.mkstemp(suffix=".mcap")[1]), scene, "", twin_version="bench"
    )  # only to build the same bytes the sink writes
    routes = recorder._routes
    pairs = []
    for m in messages:
        raw = pack_header(m.header.kind, m.header.seq, m.header.stamp_ns, m.header.epoch)
        h = m.header
        canonical = recorder._canonical(
            routes[m.topic], m.payload, m.joint_values, h.seq, h.stamp_ns, h.epoch
        )
        pairs.append((raw + m.payload, canonical))
    recorder.close()
    recorder.path.unlink()
    return pairs


def _bench_raw(pairs: list[tuple[bytes, bytes]], chunk_size: int, folder: Path) -> float:
    with (folder / "raw.mcap").open("wb") as stream:
        writer = Writer(stream, chunk_size=chunk_size, compression=COMPRESSION)
        writer.start()
        raw_channel = writer.register_channel("/raw", "hall-twin-v1", 0)
        json_channel = writer.register_channel("/json", "json", 0)
        add = writer.add_message
        started = time.perf_counter()
        for i, (raw, canonical) in enumerate(pairs):
            add(raw_channel, i, raw, i, i)
            add(json_channel, i, canonical, i, i)
        writer.finish()  # type: ignore[no-untyped-call]
        return len(pairs) / (time.perf_counter() - started)


def _bench_chunked(pairs: list[tuple[bytes, bytes]], chunk_size: int, folder: Path) -> float:
    with (folder / "chunked.mcap").open("wb") as stream:
        writer = ChunkedMcapWriter(stream, chunk_size_bytes=chunk_size, compression=COMPRESSION)
        raw_channel = writer.register_channel("/raw", "hall-twin-v1", 0)
        json_channel = writer.register_channel("/json", "json", 0)
        add = writer.add_message
        started = time.perf_counter()
        for i, (raw, canonical) in enumerate(pairs):
            add(raw_channel, i, raw, i, i)
            add(json_channel, i, canonical, i, i)
        writer.finish()
        return len(pairs) / (time.perf_counter() - started)


def _bench_json_only(scene: Scene, messages: list[Received]) -> float:
    path = Path(tempfile.mkstemp(suffix=".mcap")[1])
    recorder = Recorder(path, scene, "", twin_version="bench")
    routes, canonical = recorder._routes, recorder._canonical
    started = time.perf_counter()
    for m in messages:
        h = m.header
        canonical(routes[m.topic], m.payload, m.joint_values, h.seq, h.stamp_ns, h.epoch)
    rate = len(messages) / (time.perf_counter() - started)
    recorder.close()
    path.unlink()
    return rate


def run(count: int, repeat: int = 3) -> dict[str, Any]:
    """Run every measurement ``repeat`` times; returns the JSON report (medians)."""
    scene = load_scene()
    messages = realistic_messages(scene, count)
    runs: dict[str, list[float]] = {
        k: []
        for k in (
            "process",
            "process_idle",
            "handoff",
            "sink",
            "sink_inline",
            "raw",
            "chunked",
            "json",
            "bytes",
        )
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        chunk = Recorder(folder / "probe.mcap", scene, "", twin_version="bench")
        chunk_size = chunk.chunk_size_bytes
        chunk.close()
        pairs = _pairs(scene, messages)
        for _ in range(repeat):
            process_rate, handoff_rate = _bench_process(scene, messages, folder)
            runs["process"].append(process_rate)
            runs["handoff"].append(handoff_rate)
            runs["process_idle"].append(_bench_process(scene, messages, folder, idle=True)[0])
            sink_rate, size = _bench_sink(scene, messages, folder)
            runs["sink"].append(sink_rate)
            runs["bytes"].append(size)
            runs["sink_inline"].append(_bench_sink(scene, messages, folder, background=False)[0])
            runs["raw"].append(_bench_raw(pairs, chunk_size, folder))
            runs["chunked"].append(_bench_chunked(pairs, chunk_size, folder))
            runs["json"].append(_bench_json_only(scene, messages))
    median = {k: statistics.median(v) for k, v in runs.items()}
    return {
        "messages": count,
        "repeat": repeat,
        "msgs_per_s": round(median["process"]),
        "msgs_per_s_all_runs": [round(r) for r in runs["process"]],
        "msgs_per_s_idle_priority": round(median["process_idle"]),
        "handoff_msgs_per_s": round(median["handoff"]),
        "msgs_per_s_in_thread": round(median["sink"]),
        "msgs_per_s_inline_compression": round(median["sink_inline"]),
        "raw_mcap_msgs_per_s": round(median["raw"]),
        "vs_raw_mcap": round(median["process"] / median["raw"], 2),
        "raw_mcap_msgs_per_s_all_runs": [round(r) for r in runs["raw"]],
        "recorder_writer_only_msgs_per_s": round(median["chunked"]),
        "canonical_json_only_msgs_per_s": round(median["json"]),
        "target_msgs_per_s": TARGET_MSGS_PER_S,
        "meets_target": median["process"] >= TARGET_MSGS_PER_S,
        "bytes_per_msg_on_disk": round(median["bytes"] / count, 1),
        "chunk_size_bytes": chunk_size,
        "compression": COMPRESSION.name.lower(),
        "machine": machine_info(),
    }


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="Runs; figures are medians.")
    parser.add_argument("--json", action="store_true", help="Print JSON.")
    args = parser.parse_args()
    report = run(args.messages, args.repeat)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
