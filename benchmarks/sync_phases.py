"""The phases of ``benchmarks/sync.py`` that are not the twin: the synthetic hall, the
publishers' share of robots, draining, and the bare-pyzmq baseline (a SUB that only counts).

``benchmarks/sync.py`` runs the twin between them and reports both in one JSON object.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import zmq

from benchmarks.sync_publishers import DRAIN_CAP_S, PUMP_S, PhaseSpec, Pool, Report
from robots import get_model
from scenes.model import Scene
from sync.addresses import INGEST_RCVHWM

Ctx = zmq.Context[zmq.Socket[bytes]]

ANY_PORT: Final = "tcp://127.0.0.1:*"
STATION_SPACING_M: Final = 2.0
DRAIN_QUIET_S: Final = 0.3


# -- the synthetic hall ---------------------------------------------------------------


def hall_yaml(robots: int, model_name: str) -> str:
    """Scene YAML: ``robots`` robots of one model on a square grid of stations."""
    model = get_model(model_name)
    cols = max(1, math.ceil(math.sqrt(robots)))
    rows = max(1, math.ceil(robots / cols))
    margin = 4.0
    size_x = max(10.0, 2 * margin + (cols - 1) * STATION_SPACING_M)
    size_y = max(10.0, 2 * margin + (rows - 1) * STATION_SPACING_M)
    lines = [
        f"name: Synthetic hall ({robots} x {model_name})",
        "floor:",
        f"  size: [{size_x:g}, {size_y:g}]",
        "  ceiling: 10",
        "hub:",
        "  id: HUB",
        "  pose: {xyz: [1.5, 1.5, 0]}",
        "  size: [1.2, 0.8, 2.0]",
        "stations:",
    ]
    for i in range(robots):
        x = margin + (i % cols) * STATION_SPACING_M
        y = margin + (i // cols) * STATION_SPACING_M
        lines.append(f"  - {{id: S{i:03d}, pose: {{xyz: [{x:g}, {y:g}, 0], yaw: 0 deg}}}}")
    lines.append("robots:")
    for i in range(robots):
        lines.append(
            f"  - {{id: {robot_id(i)}, model: {model_name}, "
            f"manufacturer: {model.manufacturer}, station: S{i:03d}, task: idle}}"
        )
    return "\n".join(lines) + "\n"


def robot_id(index: int) -> str:
    """The id of the index-th synthetic robot."""
    return f"R{index:03d}"


def build_scene(robots: int, model_name: str) -> Scene:
    """Parse (and so validate) the synthetic hall."""
    from scenes import parse_scene

    return parse_scene(hall_yaml(robots, model_name), "<synthetic hall>")


# -- publisher processes: benchmarks/sync_publishers.py


def phase_specs(
    ingest: str, robots: int, publishers: int, model: str, hz: float, args: argparse.Namespace
) -> list[PhaseSpec]:
    """Robots dealt round-robin to the publishers."""
    ids = [robot_id(i) for i in range(robots)]
    return [
        PhaseSpec(
            ingest,
            tuple(ids[p::publishers]),
            model,
            hz,
            args.warmup_s,
            args.seconds,
            getattr(args, "connections", 1),
        )
        for p in range(publishers)
    ]


# -- measuring ------------------------------------------------------------------------


@dataclass
class Phase:
    """What one phase measured, receiver side and publisher side."""

    window_s: float
    received_window: int
    cpu_window_s: float
    reports: list[Report]
    accounted: int  # received + gaps, whole run, after the drain
    received_total: int
    backlog_at_window_end: int
    drain_s: float
    drain_complete: bool

    @property
    def sent_window(self) -> int:
        return sum(r.sent_window for r in self.reports)

    @property
    def sent_total(self) -> int:
        return sum(r.sent_total for r in self.reports)

    @property
    def publisher_cpu_percent(self) -> float:
        wall = max((r.wall_window_s for r in self.reports), default=0.0)
        return 100.0 * sum(r.cpu_window_s for r in self.reports) / wall if wall > 0 else 0.0

    @property
    def sent_per_s(self) -> float:
        wall = max((r.wall_window_s for r in self.reports), default=0.0)
        return self.sent_window / wall if wall > 0 else 0.0


def drain(
    pool: Pool,
    pump: Callable[[float], int],
    accounted: Callable[[], int],
) -> tuple[list[Report], float, bool]:
    """Keep receiving until every message sent is accounted for, or the queue stays empty.

    ``pump(seconds)`` receives for that long and returns how many messages it handled;
    ``accounted()`` is received + gaps so far. Returns the publishers' reports, how long
    the drain took and whether it completed (nothing left that could still arrive).
    """
    started = time.monotonic()
    reports: dict[int, Report] = {}
    quiet = 0.0
    complete = False
    while time.monotonic() - started < DRAIN_CAP_S:
        got = pump(PUMP_S)
        pool.collect(reports)
        if len(reports) < len(pool.pipes):
            continue
        if accounted() >= sum(r.sent_total for r in reports.values()):
            complete = True
            break
        quiet = quiet + PUMP_S if got == 0 else 0.0
        if quiet >= DRAIN_QUIET_S:
            complete = True  # the queue is empty: what is missing has vanished
            break
    if len(reports) < len(pool.pipes):
        raise RuntimeError("a publisher did not report back after its phase")
    pool.release()
    return [reports[w] for w in sorted(reports)], time.monotonic() - started, complete


def run_raw(pool: Pool, args: argparse.Namespace, model: str, hz: float) -> Phase:
    """A bare SUB socket that only counts messages; publishers at ``hz`` (0: flat out)."""
    context: Ctx = zmq.Context()
    socket = context.socket(zmq.SUB)
    try:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, INGEST_RCVHWM)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.bind(ANY_PORT)
        endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        counts = [0, 0]  # messages, frames

        def pump(seconds: float) -> int:
            """Count whatever arrives for ``seconds``; the number of messages."""
            end = time.monotonic() + seconds
            before = counts[0]
            while True:
                left_ms = int((end - time.monotonic()) * 1000)
                if left_ms <= 0:
                    break
                if socket.poll(left_ms, zmq.POLLIN):
                    for _ in range(2000):
                        try:
                            frames = socket.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        counts[0] += 1
                        counts[1] += len(frames)
            return counts[0] - before

        specs = phase_specs(endpoint, args.robots, len(pool.pipes), model, hz, args)
        start = pool.begin(specs, pump)
        window_start = start + args.warmup_s
        window_end = window_start + args.seconds
        pump(max(0.0, window_start - time.monotonic()))
        received0 = counts[0]
        cpu0, wall0 = time.process_time(), time.monotonic()
        pump(max(0.0, window_end - time.monotonic()))
        cpu1, wall1 = time.process_time(), time.monotonic()
        received1 = counts[0]
        reports, drain_s, complete = drain(pool, pump, lambda: counts[0])
        return Phase(
            window_s=wall1 - wall0,
            received_window=received1 - received0,
            cpu_window_s=cpu1 - cpu0,
            reports=reports,
            accounted=counts[0],
            received_total=counts[0],
            backlog_at_window_end=sum(r.sent_total for r in reports) - received1,
            drain_s=drain_s,
            drain_complete=complete,
        )
    finally:
        socket.close(linger=0)
        context.destroy(linger=0)
