"""How fast a long recording opens, seeks and replays (state reconstruction, no rendering).

Usage: ``python benchmarks/replay.py [--robots 20] [--minutes 10] [--hz 20] [--full-rate]
[--json]``. Writes a synthetic recording with :class:`twin.record.recorder.Recorder` (as the
tests do: :class:`twin.live.ingest.Received` objects fed to its sink, no sockets):
``--robots`` Kestrel K1 robots (27 joints) in a synthetic hall
(``benchmarks.sync.hall_yaml``, no cranes), joint states at ``--hz`` each, base pose
and heartbeat at 1 Hz, an event every 30 s, log times spread over ``--minutes``. With
``--full-rate`` the robots are Kestrel K1, Orca H2 and Tessel T3 in turn, each at its
own telemetry rate (500, 200 and 100 Hz; 27, 32 and 23 joints). Then measures
``open_s`` (open, ready at t = 0), ``index_mb`` (what the replay holds then: the chunk
table and the few chunks it decoded; ``chunks_read_at_open`` of ``chunks``),
``peak_rss_mb`` (the process's peak, writing included), ``seek_ms_p50``/``seek_ms_max``
over 200 random seeks (each may read a chunk or two), ``held_mb_max`` (the most the
replay held after any seek), and ``rebuild_x_realtime``: the whole recording played
through :meth:`ReplaySource.advance` in 1 ms steps, simulated seconds per wall second.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import machine_info
from benchmarks.sync_phases import hall_yaml, robot_id
from robots import get_model
from scenes import parse_scene
from sync.codecs import codec_for
from sync.protocol import BaseState, Header, Heartbeat, Kind, Received, encode_payload, topic
from twin.record.recorder import Recorder
from twin.record.recording import open_recording
from twin.record.replay_chunks import chunk_catalog
from twin.record.replay_source import ReplaySource

MODEL = "kestrel_k1"
FULL_RATE_MODELS = ("kestrel_k1", "orca_h2", "tessel_t3")
T0_NS = 1_700_000_000_000_000_000
SEEK_TARGET_MS = 100.0
REBUILD_TARGET_X = 20.0


def _received(kind: Kind, source: str, seq: int, log_ns: int, payload: bytes) -> Received:
    header = Header(kind=kind, seq=seq, stamp_ns=log_ns - 200_000, epoch=0x1234)
    return Received(log_ns, source, header, topic(kind, source), payload)


def mixed_hall_yaml(robots: int) -> str:
    """The synthetic hall with Kestrel, Orca and Tessel robots in turn."""
    lines = hall_yaml(robots, MODEL).splitlines()
    for r in range(robots):
        model = get_model(FULL_RATE_MODELS[r % len(FULL_RATE_MODELS)])
        old = f"id: {robot_id(r)}, model: {MODEL}, manufacturer: {get_model(MODEL).manufacturer},"
        new = f"id: {robot_id(r)}, model: {model.name}, manufacturer: {model.manufacturer},"
        at = next(i for i, line in enumerate(lines) if old in line)
        lines[at] = lines[at].replace(old, new)
    return "\n".join(lines) + "\n"


def write_recording(path: Path, robots: int, seconds: float, hz: float, full_rate: bool) -> int:
    """The synthetic recording; returns the number of messages fed to the recorder.

    ``full_rate``: every robot at its model's telemetry rate (``hz`` is then ignored).
    """
    text = mixed_hall_yaml(robots) if full_rate else hall_yaml(robots, MODEL)
    scene = parse_scene(text, "synthetic")
    rng = np.random.default_rng(3)
    variants: dict[str, list[bytes]] = {}
    beats: dict[str, bytes] = {}
    for name in {r.model for r in scene.robots}:
        model = get_model(name)
        codec = codec_for(model)
        low = np.array([model.joint(j).lower for j in codec.names])
        high = np.array([model.joint(j).upper for j in codec.names])
        n = len(codec.names)
        variants[name] = [
            codec.encode(rng.uniform(low, high), rng.normal(0, 1, n), rng.normal(0, 10, n))
            for _ in range(64)
        ]
        beats[name] = encode_payload(
            Heartbeat("running", False, False, model.manufacturer, name, "idle")
        )
    robot_hz = [get_model(r.model).profile.rate_hz if full_rate else hz for r in scene.robots]
    tick_hz = max(robot_hz)
    every = [round(tick_hz / rate) for rate in robot_hz]  # ticks between a robot's reports
    period_ns = int(1e9 / tick_hz)
    steps = int(seconds * tick_hz)
    per_s = int(tick_hz)
    count = 0
    with Recorder(path, scene, text, twin_version="bench") as recorder:
        sink = recorder.sink
        for step in range(steps):
            base_ns = T0_NS + step * period_ns
            for r, robot in enumerate(scene.robots):
                if step % every[r]:
                    continue
                rid = robot.id
                log_ns = base_ns + r * 1000
                seq = step // every[r]
                payload = variants[robot.model][(seq + r) % 64]
                sink(_received(Kind.JOINT_STATE, rid, seq, log_ns, payload))
                count += 1
                if step % per_s == 0:
                    x = 4.0 + step / tick_hz * 0.02
                    pose = BaseState((x, 4.0, 0.9), (0, 0, 0, 1), (0, 0, 0), (0, 0, 0), (0, 0, 9.8))
                    sink(_received(Kind.BASE, rid, step, log_ns, encode_payload(pose)))
                    sink(_received(Kind.HEARTBEAT, rid, step, log_ns, beats[robot.model]))
                    count += 2
            if step % (30 * per_s) == 0:
                recorder.event("synthetic", robot_id(step % robots), "tick", base_ns)
                count += 1
    return count


def measure(path: Path, seeks: int, step_s: float) -> dict[str, Any]:
    started = time.perf_counter()
    source = ReplaySource(open_recording(path))
    open_s = time.perf_counter() - started
    index_bytes = source.index_bytes
    read_at_open = source.chunks_read
    rng = np.random.default_rng(11)
    seek_ms = []
    held = index_bytes
    for t_s in rng.uniform(0.0, source.duration_s, seeks):
        started = time.perf_counter()
        source.seek(float(t_s))
        seek_ms.append((time.perf_counter() - started) * 1000.0)
        held = max(held, source.index_bytes)
    source.seek(0.0)
    source.playing = True
    started = time.perf_counter()
    steps = 0
    while source.playing:
        source.advance(step_s)
        source.poll()
        steps += 1
    wall_s = time.perf_counter() - started
    return {
        "open_s": round(open_s, 3),
        "index_mb": round(index_bytes / 1e6, 1),
        "chunks": len(chunk_catalog(source.recording).chunks),
        "chunks_read_at_open": read_at_open,
        "held_mb_max": round(held / 1e6, 1),
        "seeks": seeks,
        "seek_ms_p50": round(float(np.percentile(seek_ms, 50)), 3),
        "seek_ms_max": round(max(seek_ms), 3),
        "seek_target_ms": SEEK_TARGET_MS,
        "rebuild_steps": steps,
        "rebuild_step_s": step_s,
        "rebuild_wall_s": round(wall_s, 3),
        "rebuild_x_realtime": round(source.duration_s / wall_s, 1),
        "rebuild_target_x": REBUILD_TARGET_X,
        "duration_s": round(source.duration_s, 3),
        "events": len(source.events),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robots", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--hz", type=float, default=20.0, help="joint states/s per robot")
    parser.add_argument("--seeks", type=int, default=200)
    parser.add_argument(
        "--full-rate",
        action="store_true",
        help="Kestrel/Orca/Tessel robots in turn, each at its telemetry rate (500/200/100 Hz).",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "long.mcap"
        started = time.perf_counter()
        messages = write_recording(path, args.robots, args.minutes * 60.0, args.hz, args.full_rate)
        write_s = time.perf_counter() - started
        result: dict[str, Any] = {
            "benchmark": "replay",
            "robots": args.robots,
            "models": list(FULL_RATE_MODELS) if args.full_rate else [MODEL],
            "joint_hz": "500/200/100 (model rates)" if args.full_rate else args.hz,
            "minutes": args.minutes,
            "messages": messages,
            "file_mb": round(path.stat().st_size / 1e6, 1),
            "write_s": round(write_s, 1),
            **measure(path, args.seeks, 0.001),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "machine": machine_info(),
        }
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        for key, value in result.items():
            sys.stdout.write(f"{key}: {value}\n")


if __name__ == "__main__":
    main()
