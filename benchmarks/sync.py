"""Live sync: N robots x J joints x H Hz of joint states into the twin, beside bare pyzmq.

Usage::

    python benchmarks/sync.py [--robots 20] [--joints 32] [--hz 500] [--seconds 5]
                              [--publishers 2] [--connections 1] [--workers 1]
                              [--warmup-s 1.0] [--tick-hz 240]
                              [--status-flood R] [--monitors] [--record [--record-nice N]]
                              [--profile] [--json]

What it does, all in one run:

1. Builds a synthetic hall (YAML text through ``parse_scene``): N robots of the model
   with J joints (32 ``orca_h2``, 27 ``kestrel_k1``, 23 ``tessel_t3``) on a 2 m grid of
   stations, one hub, nothing else.
2. Starts P publisher processes ("spawn"), each with its own ZeroMQ context and one
   :class:`~sync.gateway.Gateway` for its share of the robots. A publisher waits for
   the receiver's subscription, then sends one joint state per robot every 1/H s (a
   burst per tick, paced by sleeping until the next due time on ``time.monotonic``),
   for warm-up + S seconds. Payloads are real vendor payloads (``codec.encode`` of
   slowly varying joint arrays), stamped with ``time.time_ns()`` by ``Gateway.send``.
   A publisher keeps its socket open until the receiver has drained (closing it with
   linger 0 would discard its last queued messages) and reports what it sent.
3. Twin run: the :class:`~twin.live.mirror.Mirror` runs in the main thread on random ports.
   After the warm-up its delay meters are reset and its counters read; after S seconds
   they are read again. Then the twin keeps running until every message sent has been
   accounted for (or nothing has arrived for 0.3 s, or 5 s passed): the drain.
4. Baseline, after the twin run, with the same publisher processes and the same sending
   code: a bare zmq SUB socket in the main process that only counts messages (no
   decoding, no world), first at the same rate H, then with the publishers sending as
   fast as they can.

Figures (the measured window is the S seconds after the warm-up):

- ``sent``: joint states the publishers sent in the window (by due time);
  ``received``: joint states the twin accepted in the window (sequence trackers);
  ``msgs_per_s`` = received / the window's measured length.
- ``lost``: over the whole run (warm-up + window, after the drain): sequence gaps plus
  anything sent that was neither received nor seen as a gap (vanished at the tail).
  ``backlog_at_window_end``: sent minus accounted for when the window closed (queued
  or in flight); ``drain_s``: how long it took to account for everything afterwards.
- ``p50_ms``/``p99_ms``/``max_ms``: send stamp to "state applied" (``DelayMeter`` raw
  samples of all robots pooled), for states applied in the window and the drain. The
  mirror applies the newest state of each robot a received batch brought right after the
  batch, within a time budget, and the rest on its next tick (``--tick-hz``); superseded
  states are never applied and are not sampled. Applied is the twin's state (what the
  fan-out, snapshots, detectors and gate read); the PyBullet bodies are set from it only
  before the detectors run, which this benchmark attaches only with ``--monitors``. Each
  meter keeps the newest 4096 samples; ``latency_samples_capped`` says when that cut some.
- ``cpu_percent``: the twin process (all its threads) over the window, process time /
  wall time * 100; ``loop_cpu_percent``: the mirror loop's thread alone (the rest is
  ZeroMQ's I/O thread); ``publisher_cpu_percent``: the publisher processes' summed.
- ``ticks``/``tick_overruns``: the mirror's, during the window; ``tick_rate_hz`` the
  ticks it managed per second (a busy twin ticks less often than ``--tick-hz``, and the
  world then lags by up to a tick interval, which the latency samples do not show).
- ``raw_pyzmq_msgs_per_s``, ``raw_pyzmq_max_msgs_per_s``: what the bare SUB counted
  per second in its window at rate H and flat out (``raw_pyzmq_max_sent_per_s``: what
  the publishers managed to send flat out; a PUB drops at its high-water mark).

``--status-flood R``: while the twin runs, another process (``benchmarks/status_flood.py``)
floods its snapshot/status endpoint with R status requests a second from 50 DEALER and 4
REQ sockets; ``status_flood`` in the result says what it sent and got answered, and what
the twin answered and shed (``requests``). The latency figures then show what the flood
cost ingest.

``--monitors`` attaches the failure detectors as ``twin live`` does (20 Hz, collisions at
4 Hz), so the PyBullet world is synced before each of their runs; ``joint_states_applied``
and ``world_updates`` (robots set in PyBullet) count the window's.

``--record`` attaches the recorder as ``twin live --record`` does (its own process,
:mod:`twin.record.recorder_process`; an MCAP file in a temporary directory, deleted
afterwards); ``recorded`` says how many messages it wrote, ``record_handed`` how many the
mirror handed it, ``record_dropped`` how many it dropped (its backlog bound),
``record_lossless`` whether every message the twin accepted was written,
``recording_bytes`` the file's size, ``record_close_s`` how long closing it took (the
worker writing what it had not yet, then the summary) and ``record_worker_cpu_s`` the
worker process's CPU time over its life. ``--record-nice N``: the worker runs at nice N
instead of SCHED_IDLE (``twin live``'s).

``--workers W`` takes telemetry in as ``twin live --workers W`` does (W processes sharing
the ingest port; :mod:`twin.live.shards`): ``workers_cpu_percent`` is their CPU summed
over the window, ``accepted_by_worker`` how many messages each accepted over the run, and
``cpu_percent``/``loop_cpu_percent`` stay the twin's own process and thread. The kernel
spreads *connections* over the workers, so give the publishers several
(``--connections K``: each publisher deals its robots to K gateways, each with its own
socket, as a hall of one gateway per robot or per few robots has; the baseline uses the
same connections).

``--profile`` runs the twin's window under cProfile and prints the top 25 functions by
cumulative and by own time to stderr (the figures of a profiled run are inflated by
the profiler). The whole run is bounded: every wait has a timeout, and an alarm ends
it after 3 * (warm-up + S) + 30 s.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import zmq

from benchmarks.machine import machine_info
from benchmarks.sync_phases import (
    ANY_PORT,
    Phase,
    build_scene,
    drain,
    phase_specs,
    run_raw,
)
from benchmarks.sync_publishers import (
    Pool,
)
from sync.protocol import Kind

if TYPE_CHECKING:
    from scenes.model import Scene
    from sync.streams import DelayMeter
    from twin.live.mirror import Mirror
    from twin.record.recorder_process import RecorderProcess

Ctx = zmq.Context[zmq.Socket[bytes]]

MODEL_BY_JOINTS: Final = {32: "orca_h2", 27: "kestrel_k1", 23: "tessel_t3"}
STATION_SPACING_M: Final = 2.0
DRAIN_QUIET_S: Final = 0.3


def raw_latencies_ns(meter: DelayMeter) -> list[int]:
    """The meter's raw (uncorrected) samples: send stamp to applied, nanoseconds."""
    return [int(v) for v in meter.raw_latency_ns.values()]


def _js_totals(mirror: Mirror) -> tuple[int, int]:
    """(received, gaps) of every robot's joint-state stream."""
    received = gaps = 0
    for link in mirror.robots.values():
        tracker = link.tracker(Kind.JOINT_STATE)
        received += tracker.received
        gaps += tracker.gaps
    return received, gaps


@dataclass
class TwinRun:
    """The twin phase: the common figures plus the mirror's own."""

    phase: Phase
    gaps_total: int
    gaps_window: int
    loop_cpu_window_s: float  # the mirror loop's thread alone
    latencies_ns: list[int]
    latency_samples_capped: bool
    ticks: int
    tick_overruns: int
    applied: int
    world_updates: int
    bad_frames: dict[str, int]
    profile_text: str
    flood: dict[str, Any] | None = None
    recorded: int | None = None
    recording_bytes: int | None = None
    record_handed: int | None = None
    record_dropped: int | None = None
    accepted_total: int = 0  # every message the twin accepted, the whole run
    record_close_s: float | None = None
    record_worker_cpu_s: float | None = None
    workers_cpu_window_s: float = 0.0  # the ingest workers' (twin live --workers)
    accepted_by_worker: list[int] | None = None


def run_twin(scene: Scene, pool: Pool, args: argparse.Namespace, model: str) -> TwinRun:
    """Mirror in the main thread, publishers at ``args.hz``; measure the window and drain."""
    from sync.addresses import Endpoints
    from twin.live.mirror import Mirror

    context: Ctx = zmq.Context()
    mirror = Mirror(
        scene,
        Endpoints(ANY_PORT, ANY_PORT, ANY_PORT),
        context=context,
        tick_hz=args.tick_hz,
        workers=args.workers,
    )
    if args.monitors:
        from twin.failures.monitors import Monitors

        mirror.monitors = Monitors()
    recorder: RecorderProcess | None = None
    recording_dir: tempfile.TemporaryDirectory[str] | None = None
    recorded = (0, 0, 0, 0)
    record_extra = (0.0, 0.0)
    if args.record:
        from benchmarks.sync_phases import hall_yaml
        from twin.record.recorder_process import RecorderProcess

        recording_dir = tempfile.TemporaryDirectory(prefix="sync-bench-")
        recorder = RecorderProcess(
            Path(recording_dir.name) / "bench.mcap",
            scene,
            hall_yaml(args.robots, model),
            twin_version="benchmark",
            **({} if args.record_nice is None else {"nice": args.record_nice, "idle": False}),
        )
        mirror.frame_sinks.append(recorder)
    try:

        def pump(seconds: float) -> int:
            before = mirror.ingest.received
            mirror.run(duration_s=seconds)
            return mirror.ingest.received - before

        specs = phase_specs(
            mirror.endpoints.ingest, args.robots, len(pool.pipes), model, args.hz, args
        )
        flooder = None
        if args.status_flood > 0:
            flooder = subprocess.Popen(
                [
                    sys.executable, "-m", "benchmarks.status_flood", mirror.endpoints.snapshot,
                    "--rate", f"{args.status_flood:g}",
                    "--seconds", f"{args.warmup_s + args.seconds + 1.0:g}",
                ],
                cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
        start = pool.begin(specs, pump)
        window_start = start + args.warmup_s
        window_end = window_start + args.seconds
        mirror.run(duration_s=max(0.0, window_start - time.monotonic()))

        received0, gaps0 = _js_totals(mirror)
        for link in mirror.robots.values():
            link.delay.reset()
        ticks0, overruns0 = mirror.ticks, mirror.tick_overruns
        applied0, world0 = mirror.joint_states_applied, mirror.world_updates
        profiler = cProfile.Profile() if args.profile else None
        workers0 = mirror.shards.cpu_s() if mirror.shards is not None else 0.0
        cpu0, wall0, thread0 = time.process_time(), time.monotonic(), time.thread_time()
        if profiler is not None:
            profiler.enable()
        mirror.run(duration_s=max(0.0, window_end - time.monotonic()))
        if profiler is not None:
            profiler.disable()
        cpu1, wall1, thread1 = time.process_time(), time.monotonic(), time.thread_time()
        workers1 = mirror.shards.cpu_s() if mirror.shards is not None else 0.0
        received1, gaps1 = _js_totals(mirror)
        ticks, overruns = mirror.ticks - ticks0, mirror.tick_overruns - overruns0
        applied, world = mirror.joint_states_applied - applied0, mirror.world_updates - world0

        def accounted() -> int:
            return sum(_js_totals(mirror))

        reports, drain_s, complete = drain(pool, pump, accounted)
        flood = None
        if flooder is not None:
            while flooder.poll() is None:
                mirror.run(duration_s=0.1)  # keep answering until the flood is over
            flood = {"rate_hz": args.status_flood, **json.loads(flooder.communicate()[0])}
            mirror.run(duration_s=0.3)  # the server's counters reach the twin
            flood["twin"] = mirror.status()["requests"]
        received_total, gaps_total = _js_totals(mirror)
        latencies: list[int] = []
        capped = False
        for link in mirror.robots.values():
            samples = raw_latencies_ns(link.delay)
            latencies.extend(samples)
            capped = capped or len(samples) == link.delay.raw_latency_ns.capacity
        phase = Phase(
            window_s=wall1 - wall0,
            received_window=received1 - received0,
            cpu_window_s=cpu1 - cpu0,
            reports=reports,
            accounted=received_total + gaps_total,
            received_total=received_total,
            backlog_at_window_end=sum(r.sent_total for r in reports) - received1 - gaps1,
            drain_s=drain_s,
            drain_complete=complete,
        )
        run = TwinRun(
            phase=phase,
            gaps_total=gaps_total,
            gaps_window=gaps1 - gaps0,
            loop_cpu_window_s=thread1 - thread0,
            latencies_ns=latencies,
            latency_samples_capped=capped,
            ticks=ticks,
            tick_overruns=overruns,
            applied=applied,
            world_updates=world,
            bad_frames=dict(mirror.ingest.bad_frames),
            profile_text=_profile_text(profiler) if profiler is not None else "",
            flood=flood,
            workers_cpu_window_s=workers1 - workers0,
            accepted_by_worker=(
                list(mirror.shards.accepted_by_worker) if mirror.shards is not None else None
            ),
        )
    finally:
        accepted_total = mirror.ingest.accepted
        mirror.close()
        context.destroy(linger=0)
        if recorder is not None and recording_dir is not None:
            children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            closing = time.monotonic()
            recorder.close()  # waits for the worker to write its backlog and finish the file
            close_s = time.monotonic() - closing
            children1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the worker, reaped
            worker_cpu_s = sum(
                getattr(children1, f) - getattr(children0, f) for f in ("ru_utime", "ru_stime")
            )
            size = recorder.path.stat().st_size
            recorded = (recorder.messages, size, recorder.handed, recorder.dropped)
            record_extra = (close_s, worker_cpu_s)
            recording_dir.cleanup()
    run.accepted_total = accepted_total
    if recorder is not None:
        run.recorded, run.recording_bytes, run.record_handed, run.record_dropped = recorded
        run.record_close_s, run.record_worker_cpu_s = record_extra
    return run


def _profile_text(profiler: cProfile.Profile) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs()
    out.write("== twin window, top 25 by cumulative time ==\n")
    stats.sort_stats("cumulative").print_stats(25)
    out.write("== twin window, top 25 by own time ==\n")
    stats.sort_stats("tottime").print_stats(25)
    return out.getvalue()


# -- the command ------------------------------------------------------------------------


class BudgetExceeded(Exception):
    """The whole run took longer than its budget."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise BudgetExceeded("the benchmark ran past its time budget")


def _percentile_ms(values: np.ndarray[Any, np.dtype[np.float64]], q: float) -> float | None:
    return round(float(np.percentile(values, q)) / 1e6, 3) if values.size else None


def result_of(
    args: argparse.Namespace, model: str, twin: TwinRun, raw: Phase, raw_max: Phase
) -> dict[str, Any]:
    """The JSON object of the run."""
    phase = twin.phase
    sent_total = phase.sent_total
    lost = twin.gaps_total + max(0, sent_total - phase.received_total - twin.gaps_total)
    values = np.asarray(twin.latencies_ns, dtype=np.float64)
    return {
        "benchmark": "sync",
        "robots": args.robots,
        "joints": args.joints,
        "model": model,
        "target_hz": args.hz,
        "seconds": args.seconds,
        "warmup_s": args.warmup_s,
        "publishers": len(phase.reports),
        "connections_per_publisher": args.connections,
        "workers": args.workers,
        "tick_hz": args.tick_hz,
        "profiled": bool(args.profile),
        "target_msgs_per_s": args.robots * args.hz,
        "sent": phase.sent_window,
        "received": phase.received_window,
        "lost": lost,
        "msgs_per_s": round(phase.received_window / phase.window_s, 1),
        "p50_ms": _percentile_ms(values, 50.0),
        "p99_ms": _percentile_ms(values, 99.0),
        "max_ms": round(float(values.max()) / 1e6, 3) if values.size else None,
        "latency_samples": int(values.size),
        "latency_samples_capped": twin.latency_samples_capped,
        "cpu_percent": round(100.0 * phase.cpu_window_s / phase.window_s, 1),
        "loop_cpu_percent": round(100.0 * twin.loop_cpu_window_s / phase.window_s, 1),
        "workers_cpu_percent": round(100.0 * twin.workers_cpu_window_s / phase.window_s, 1),
        "accepted_by_worker": twin.accepted_by_worker,
        "publisher_cpu_percent": round(phase.publisher_cpu_percent, 1),
        "publisher_max_lag_ms": round(max(r.max_lag_ms for r in phase.reports), 3),
        "ticks": twin.ticks,
        "tick_rate_hz": round(twin.ticks / phase.window_s, 1),
        "tick_overruns": twin.tick_overruns,
        "monitors": bool(args.monitors),
        "recorded": twin.recorded,
        "recording_bytes": twin.recording_bytes,
        "record_handed": twin.record_handed,
        "record_nice": args.record_nice,
        "record_close_s": None if twin.record_close_s is None else round(twin.record_close_s, 2),
        "record_worker_cpu_s": (
            None if twin.record_worker_cpu_s is None else round(twin.record_worker_cpu_s, 2)
        ),
        "record_dropped": twin.record_dropped,
        "record_lossless": (
            None
            if twin.recorded is None
            else twin.recorded == twin.record_handed == twin.accepted_total
            and twin.record_dropped == 0
        ),
        "joint_states_applied": twin.applied,
        "world_updates": twin.world_updates,
        "gaps_in_window": twin.gaps_window,
        "sent_total": sent_total,
        "received_total": phase.received_total,
        "backlog_at_window_end": phase.backlog_at_window_end,
        "drain_s": round(phase.drain_s, 3),
        "drain_complete": phase.drain_complete,
        "bad_frames": twin.bad_frames,
        "status_flood": twin.flood,
        "raw_pyzmq_msgs_per_s": round(raw.received_window / raw.window_s, 1),
        "raw_pyzmq_lost": max(0, raw.sent_total - raw.received_total),
        "raw_pyzmq_cpu_percent": round(100.0 * raw.cpu_window_s / raw.window_s, 1),
        "raw_pyzmq_max_msgs_per_s": round(raw_max.received_window / raw_max.window_s, 1),
        "raw_pyzmq_max_sent_per_s": round(raw_max.sent_per_s, 1),
        "raw_pyzmq_max_publisher_cpu_percent": round(raw_max.publisher_cpu_percent, 1),
        "machine": machine_info(),
    }


def summary(result: dict[str, Any]) -> str:
    """A few lines for a person."""
    r = result
    return "\n".join(
        [
            f"sync: {r['robots']} x {r['model']} ({r['joints']} joints) at {r['target_hz']:g} Hz, "
            f"{r['publishers']} publishers, {r['seconds']:g} s after {r['warmup_s']:g} s warm-up",
            f"  twin      {r['msgs_per_s']:>10,.0f} msg/s of {r['target_msgs_per_s']:,.0f}  "
            f"sent {r['sent']:,}  received {r['received']:,}  lost {r['lost']:,}",
            f"  latency   p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  max {r['max_ms']} ms  "
            f"(send stamp to applied, tick {r['tick_hz']:g} Hz)",
            f"  cpu       twin {r['cpu_percent']}%  publishers {r['publisher_cpu_percent']}%  "
            f"ticks {r['ticks']}  overruns {r['tick_overruns']}  "
            f"backlog at end {r['backlog_at_window_end']:,}",
            f"  raw pyzmq {r['raw_pyzmq_msgs_per_s']:>10,.0f} msg/s at the same rate; "
            f"flat out {r['raw_pyzmq_max_msgs_per_s']:,.0f} msg/s received "
            f"({r['raw_pyzmq_max_sent_per_s']:,.0f} sent)",
            f"  machine   {r['machine']['cpu']}, {r['machine']['cores']} cores",
        ]
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    from twin.live.mirror import DEFAULT_TICK_HZ

    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--robots", type=int, default=20, help="robots in the hall (default 20)")
    parser.add_argument(
        "--joints",
        type=int,
        default=32,
        help="joints per robot: 32 (orca_h2), 27 (kestrel_k1) or 23 (tessel_t3)",
    )
    parser.add_argument("--hz", type=float, default=500.0, help="joint states per robot per s")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window (s)")
    parser.add_argument("--publishers", type=int, default=2, help="publisher processes")
    parser.add_argument(
        "--connections",
        type=int,
        default=1,
        help="gateways (connections) per publisher, its robots dealt among them",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="ingest worker processes, as twin live --workers runs them (1: in the twin)",
    )
    parser.add_argument("--warmup-s", type=float, default=1.0, help="warm-up before the window")
    parser.add_argument(
        "--tick-hz", type=float, default=DEFAULT_TICK_HZ, help="the mirror's tick rate"
    )
    parser.add_argument(
        "--status-flood",
        type=float,
        default=0.0,
        metavar="R",
        help="flood the status endpoint with R requests/s from another process meanwhile",
    )
    parser.add_argument(
        "--record", action="store_true", help="attach the recorder, as twin live --record does"
    )
    parser.add_argument(
        "--record-nice",
        type=int,
        default=None,
        metavar="N",
        help="the recorder process at nice N, not SCHED_IDLE (twin live's)",
    )
    parser.add_argument(
        "--monitors", action="store_true", help="attach the failure detectors, as twin live does"
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the twin's window; tables on stderr"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.joints not in MODEL_BY_JOINTS:
        allowed = ", ".join(f"{j} ({m})" for j, m in MODEL_BY_JOINTS.items())
        parser.error(f"--joints {args.joints}: no model has that many; allowed: {allowed}")
    for name in ("robots", "publishers", "connections", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    for name in ("hz", "seconds", "tick_hz"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.warmup_s < 0:
        parser.error("--warmup-s must not be negative")
    args.publishers = min(args.publishers, args.robots)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the three phases, print the result; 1 on failure."""
    args = parse_args(argv)
    model = MODEL_BY_JOINTS[args.joints]
    budget_s = 3 * (args.warmup_s + args.seconds) + 30.0
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, budget_s)
    pool: Pool | None = None
    try:
        pool = Pool.start(args.publishers)
        scene = build_scene(args.robots, model)
        twin = run_twin(scene, pool, args, model)
        raw = run_raw(pool, args, model, args.hz)
        raw_max = run_raw(pool, args, model, 0.0)
    except (BudgetExceeded, RuntimeError, OSError) as exc:
        sys.stderr.write(f"sync benchmark failed: {exc}\n")
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        if pool is not None:
            pool.stop()
        signal.signal(signal.SIGALRM, previous)
    if twin.profile_text:
        sys.stderr.write(twin.profile_text)
    result = result_of(args, model, twin, raw, raw_max)
    sys.stdout.write(json.dumps(result, indent=2) + "\n" if args.json else summary(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
