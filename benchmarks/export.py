"""How fast recordings become LeRobot datasets, how big they are, how fast they read back.

Usage: ``python benchmarks/export.py [--minutes 10] [--fps 50] [--repeats 3] [--json]``.
Writes a synthetic recording of the default hall with :class:`twin.record.recorder.Recorder`
(its 8 robots at their models' telemetry rates: Kestrel K1 500 Hz, Orca H2 200 Hz, Tessel T3
100 Hz; base poses at 100 Hz, heartbeats at 10 Hz with the task and a cycle that restarts
every 20 s; smooth joint motion, the ``monitors`` event), then measures:

* ``export_x_realtime``: recorded seconds per wall second of ``twin export lerobot``'s
  :func:`twin.dataset.export.export` (median of ``--repeats``), with ``jobs`` = CPUs (for one
  recording: the threads that decompress its chunks), and ``export_x_realtime_1job`` with one;
* the baseline in the same run, ``mcap_reader_x_realtime``: one pass of the ``mcap``
  library's reader over every message of the file, decoding nothing (the floor of any
  reader written in Python on that library);
* ``bytes_per_robot_hour`` of the whole export (pooled and per model) and of the pooled
  dataset alone;
* ``readback_s``: the pooled dataset's frames read with ``pyarrow.parquet.read_table``
  (median of 5), and its frames per second.

The target is ``export_x_realtime >= 100``.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import machine_info, print_result
from robots import get_model
from scenes import DEFAULT_SCENE, parse_scene
from sync.codecs import codec_for
from sync.protocol import BaseState, Header, Heartbeat, Kind, Received, encode_payload, topic
from twin.record.recorder import Recorder

T0_NS = 1_700_000_000_000_000_000
TARGET_X = 100.0
BASE_HZ = 100.0
BEAT_HZ = 10.0
CYCLE_S = 20.0


def _received(kind: Kind, source: str, seq: int, log_ns: int, payload: bytes) -> Received:
    header = Header(kind=kind, seq=seq, stamp_ns=log_ns - 200_000, epoch=0x1234)
    return Received(log_ns, source, header, topic(kind, source), payload)


def write_recording(path: Path, seconds: float) -> dict[str, Any]:
    """The default hall for ``seconds``; returns the message count and robots."""
    import numpy as np

    text = DEFAULT_SCENE.read_text(encoding="utf-8")
    scene = parse_scene(text, DEFAULT_SCENE.name)
    robots = []
    for index, robot in enumerate(scene.robots):
        model = get_model(robot.model)
        codec = codec_for(model)
        n = len(codec.names)
        rate = model.profile.rate_hz
        phases = np.linspace(0, 2 * np.pi, n, endpoint=False) + index
        # one period of smooth motion, encoded once (256 steps), replayed
        steps = 256
        t = np.arange(steps)[:, None] / steps * 2 * np.pi
        pos = 0.3 * np.sin(t + phases)
        vel = 0.3 * np.cos(t + phases)
        eff = 5.0 * np.sin(2 * t + phases)
        frames = [codec.encode(pos[i], vel[i], eff[i]) for i in range(steps)]
        robots.append((robot, model, rate, frames))
    tick_hz = 500.0
    period_ns = int(1e9 / tick_hz)
    count = 0
    with Recorder(path, scene, text, twin_version="bench") as recorder:
        sink = recorder.sink
        recorder.event("monitors", "twin", "failure detection on", T0_NS)
        for step in range(int(seconds * tick_hz)):
            base_ns = T0_NS + step * period_ns
            now_s = step / tick_hz
            for r, (robot, model, rate, frames) in enumerate(robots):
                log_ns = base_ns + r * 1000
                every = round(tick_hz / rate)
                if step % every == 0:
                    seq = step // every
                    sink(_received(Kind.JOINT_STATE, robot.id, seq, log_ns, frames[seq % 256]))
                    count += 1
                if step % round(tick_hz / BASE_HZ) == 0:
                    x, y = 4.0 + r * 3.0 + 0.1 * math.sin(now_s), 6.0 + 0.1 * math.cos(now_s)
                    pose = BaseState((x, y, 0.9), (0, 0, 0, 1), (0, 0, 0), (0, 0, 0), (0, 0, 9.8))
                    sink(_received(Kind.BASE, robot.id, step, log_ns, encode_payload(pose)))
                    count += 1
                if step % round(tick_hz / BEAT_HZ) == 0:
                    beat = Heartbeat(
                        "running", False, False, model.manufacturer, model.name,
                        robot.task or "idle", cycle=int(now_s // CYCLE_S),
                    )  # fmt: skip
                    sink(_received(Kind.HEARTBEAT, robot.id, step, log_ns, encode_payload(beat)))
                    count += 1
    return {"messages": count, "robots": len(robots)}


def _mcap_pass(path: Path) -> float:
    from mcap.reader import make_reader

    started = time.perf_counter()
    with path.open("rb") as stream:
        for _ in make_reader(stream).iter_messages():
            pass
    return time.perf_counter() - started


def _export(path: Path, out: Path, fps: float, jobs: int) -> tuple[float, Any]:
    from twin.dataset.export import Options, export

    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    summary = export(Options([path], out, fps=fps, jobs=jobs))
    return time.perf_counter() - started, summary


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=50.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import pyarrow.parquet as pq

    seconds = args.minutes * 60.0
    jobs = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        path = Path(tmp) / "hall.mcap"
        started = time.perf_counter()
        written = write_recording(path, seconds)
        write_s = time.perf_counter() - started
        baseline = [_mcap_pass(path) for _ in range(args.repeats)]
        out = Path(tmp) / "ds"
        runs = [_export(path, out, args.fps, jobs) for _ in range(args.repeats)]
        one_job = [_export(path, out, args.fps, 1)[0] for _ in range(max(1, args.repeats - 1))]
        _, summary = runs[-1]
        pooled = out / "pooled"
        reads = []
        for _ in range(5):
            begun = time.perf_counter()
            table = pq.read_table(pooled / "data")
            reads.append(time.perf_counter() - begun)
        robot_hours = written["robots"] * seconds / 3600.0
        export_s = statistics.median(r[0] for r in runs)
        result = {
            "benchmark": "export",
            "recording": {
                "minutes": args.minutes,
                "robots": written["robots"],
                "messages": written["messages"],
                "mb": round(path.stat().st_size / 1e6, 1),
                "write_s": round(write_s, 1),
            },
            "fps": args.fps,
            "jobs": jobs,
            "export_s_median": round(export_s, 3),
            "export_s_runs": [round(r[0], 3) for r in runs],
            "export_x_realtime": round(seconds / export_s, 1),
            "export_x_realtime_1job": round(seconds / statistics.median(one_job), 1),
            "target_x_realtime": TARGET_X,
            "meets_target": seconds / export_s >= TARGET_X,
            "mcap_reader_x_realtime": round(seconds / statistics.median(baseline), 1),
            "episodes": sum(r["episodes"] for r in summary.recordings),
            "frames_pooled": table.num_rows,
            "bytes_per_robot_hour": round(_size(out) / robot_hours),
            "pooled_bytes_per_robot_hour": round(_size(pooled) / robot_hours),
            "readback_s": round(statistics.median(reads), 4),
            "readback_frames_per_s": round(table.num_rows / statistics.median(reads)),
            "machine": machine_info(),
        }
    print_result(result, as_json=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
