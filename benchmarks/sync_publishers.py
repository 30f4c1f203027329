"""The publisher processes of ``benchmarks/sync.py``: robot gateways sending joint states.

Each publisher is a "spawn" process with its own ZeroMQ context and one
:class:`~sync.gateway.Gateway` for its share of the robots. The main process drives the
publishers through a pipe, phase by phase: "phase" (what to send), "go" (when to start),
"release" (the receiver has drained: close the socket), "quit".
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Final

import numpy as np
import zmq

from robots import get_model
from sync.codecs import codec_for
from sync.gateway import Gateway
from sync.protocol import Kind

Ctx = zmq.Context[zmq.Socket[bytes]]

PAYLOAD_RING: Final = 256  # distinct payloads per publisher, cycled tick by tick
SUBSCRIBER_TIMEOUT_S: Final = 5.0
READY_TIMEOUT_S: Final = 20.0  # spawn + imports + subscription
START_DELAY_S: Final = 0.2  # "go" to the first send: every publisher starts on time
DRAIN_CAP_S: Final = 5.0
RELEASE_TIMEOUT_S: Final = DRAIN_CAP_S + 5.0  # a publisher keeps its socket open this long
PUMP_S: Final = 0.05


@dataclass(frozen=True)
class PhaseSpec:
    """What one publisher does in one phase (hz 0: as fast as it can)."""

    ingest: str
    robot_ids: tuple[str, ...]
    model: str
    hz: float
    warmup_s: float
    seconds: float
    connections: int = 1  # gateways (connections) the robots are dealt to, like real ones


@dataclass(frozen=True)
class Command:
    """Main process -> publisher: "phase" (with spec), "go" (with start time), "release"
    (the phase's messages are all in: close the socket), "quit"."""

    kind: str
    spec: PhaseSpec | None = None
    start_mono: float = 0.0


@dataclass(frozen=True)
class Report:
    """Publisher -> main process: "ready" after the subscription, "done" after the phase."""

    kind: str
    worker: int
    ok: bool = True
    error: str = ""
    sent_total: int = 0
    sent_window: int = 0
    cpu_window_s: float = 0.0
    wall_window_s: float = 0.0
    max_lag_ms: float = 0.0


def payload_ring(model_name: str, count: int = PAYLOAD_RING) -> list[bytes]:
    """Valid vendor payloads of slowly varying joint states, inside the joint limits."""
    model = get_model(model_name)
    codec = codec_for(model)
    names = model.profile.joint_names
    lower = np.array([model.joint(n).lower for n in names], dtype=np.float64)
    upper = np.array([model.joint(n).upper for n in names], dtype=np.float64)
    bounded = np.isfinite(lower) & np.isfinite(upper)
    lower = np.where(bounded, lower, -1.0)
    upper = np.where(bounded, upper, 1.0)
    mid, amp = (lower + upper) / 2.0, (upper - lower) / 4.0
    phase = np.linspace(0.0, 2.0 * math.pi, len(names), endpoint=False)
    ring = []
    for k in range(count):
        angle = 2.0 * math.pi * k / count + phase
        ring.append(
            codec.encode(mid + amp * np.sin(angle), amp * np.cos(angle), 5.0 * np.sin(angle))
        )
    return ring


def publisher_main(conn: Connection[Any, Any], worker: int) -> None:
    """A publisher process: run phases on command until "quit" or the parent goes away."""
    context: Ctx = zmq.Context()
    try:
        while True:
            try:
                if not conn.poll(1.0):
                    continue
                command: Command = conn.recv()
            except (EOFError, OSError):
                return
            if command.kind == "quit":
                return
            if (
                command.kind == "phase"
                and command.spec is not None
                and not _phase(context, conn, worker, command.spec)
            ):
                return
    except KeyboardInterrupt:
        return
    finally:
        context.destroy(linger=0)


def _phase(context: Ctx, conn: Connection[Any, Any], worker: int, spec: PhaseSpec) -> bool:
    """Run one phase and report it; False when the main process said quit or went away."""
    gateways: list[Gateway] = []
    try:
        for _ in range(max(1, min(spec.connections, len(spec.robot_ids)))):
            gateways.append(Gateway(context, spec.ingest))
        report = _run_phase(gateways, conn, worker, spec)
    except Exception as exc:
        report = Report("done", worker, ok=False, error=f"{type(exc).__name__}: {exc}")
    try:
        conn.send(report)
        # Keep the socket open until the receiver has drained: closing it (linger 0)
        # would throw away what is still queued in it.
        if gateways and conn.poll(RELEASE_TIMEOUT_S):
            release: Command = conn.recv()
            return release.kind != "quit"
        return True
    except (EOFError, OSError):
        return False
    finally:
        for gateway in gateways:
            gateway.close()


def _run_phase(
    gateways: list[Gateway], conn: Connection[Any, Any], worker: int, spec: PhaseSpec
) -> Report:
    ring = payload_ring(spec.model)
    if not all(g.wait_for_subscriber(SUBSCRIBER_TIMEOUT_S) for g in gateways):
        conn.send(Report("ready", worker, ok=False, error="no subscription from the receiver"))
        return Report("done", worker, ok=False, error="no subscription")
    conn.send(Report("ready", worker))
    if not conn.poll(READY_TIMEOUT_S):
        return Report("done", worker, ok=False, error="no 'go' from the main process")
    go: Command = conn.recv()
    if go.kind != "go":
        return Report("done", worker, ok=False, error=f"expected 'go', got {go.kind!r}")
    return _send_loop(gateways, worker, spec, ring, go.start_mono)


def _send_loop(
    gateways: list[Gateway], worker: int, spec: PhaseSpec, ring: list[bytes], start: float
) -> Report:
    """One burst (a message per robot) per tick: every 1/hz s, sleeping until each is due,
    or (hz 0) back to back, the clock read once per burst."""
    period = 1.0 / spec.hz if spec.hz > 0 else 0.0
    window_start = start + spec.warmup_s
    window_end = window_start + spec.seconds
    now = time.monotonic()
    if start > now:
        time.sleep(start - now)
    joint_state = Kind.JOINT_STATE
    robots = spec.robot_ids
    # each robot's gateway's send, the robots dealt round-robin to the gateways
    sends = [gateways[i % len(gateways)].send for i in range(len(robots))]
    k = 0
    sent_window = 0
    max_lag = 0.0
    cpu0 = wall0 = 0.0
    in_window = False
    while True:
        due = start + k * period if period else time.monotonic()
        if due >= window_end:
            break
        if period:
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
        if not in_window and due >= window_start:
            in_window = True
            cpu0, wall0 = time.process_time(), time.monotonic()
        if in_window and period:
            max_lag = max(max_lag, time.monotonic() - due)
        payload = ring[k % len(ring)]
        for send, rid in zip(sends, robots, strict=True):
            send(joint_state, rid, payload)
        if in_window:
            sent_window += len(robots)
        k += 1
    cpu1, wall1 = time.process_time(), time.monotonic()
    return Report(
        "done",
        worker,
        sent_total=sum(g.sent for g in gateways),
        sent_window=sent_window,
        cpu_window_s=cpu1 - cpu0 if in_window else 0.0,
        wall_window_s=wall1 - wall0 if in_window else 0.0,
        max_lag_ms=max_lag * 1e3,
    )


@dataclass
class Pool:
    """The publisher processes and their pipes."""

    processes: list[BaseProcess] = field(default_factory=list)
    pipes: list[Connection[Any, Any]] = field(default_factory=list)

    @classmethod
    def start(cls, count: int) -> Pool:
        """Spawn ``count`` publishers (they import while the main process builds the world)."""
        ctx = multiprocessing.get_context("spawn")
        pool = cls()
        for worker in range(count):
            parent, child = ctx.Pipe()
            process = ctx.Process(
                target=publisher_main, args=(child, worker), name=f"publisher-{worker}"
            )
            process.daemon = True
            process.start()
            child.close()
            pool.processes.append(process)
            pool.pipes.append(parent)
        return pool

    def begin(
        self,
        specs: Sequence[PhaseSpec],
        pump: Callable[[float], int],
        start_delay_s: float = START_DELAY_S,
    ) -> float:
        """Hand out the phase, wait until every publisher is subscribed, say go; the start.

        The receiver is pumped meanwhile: ZeroMQ sends a SUB socket's subscription to a
        new peer only when the socket is used (polled) by its thread.
        """
        for pipe, spec in zip(self.pipes, specs, strict=True):
            pipe.send(Command("phase", spec=spec))
        deadline = time.monotonic() + READY_TIMEOUT_S
        ready: set[int] = set()
        while len(ready) < len(self.pipes):
            if time.monotonic() > deadline:
                late = sorted(set(range(len(self.pipes))) - ready)
                raise RuntimeError(f"publishers {late} not ready in {READY_TIMEOUT_S:g} s")
            pump(PUMP_S)
            for worker, pipe in enumerate(self.pipes):
                if worker not in ready and pipe.poll(0):
                    report = _receive(worker, pipe)
                    if not report.ok:
                        raise RuntimeError(f"publisher {worker}: {report.error}")
                    ready.add(worker)
        start = time.monotonic() + start_delay_s
        for pipe in self.pipes:
            pipe.send(Command("go", start_mono=start))
        return start

    def collect(self, reports: dict[int, Report]) -> None:
        """Take whatever "done" reports have arrived (never waits)."""
        for worker, pipe in enumerate(self.pipes):
            if worker not in reports and pipe.poll(0):
                report = _receive(worker, pipe)
                if not report.ok:
                    raise RuntimeError(f"publisher {worker}: {report.error}")
                reports[worker] = report

    def release(self) -> None:
        """Let the publishers close their sockets: the phase's messages are all in."""
        for pipe in self.pipes:
            pipe.send(Command("release"))

    def stop(self) -> None:
        """Ask politely, then terminate, then kill; close the pipes."""
        for pipe in self.pipes:
            with contextlib.suppress(OSError, ValueError):
                pipe.send(Command("quit"))
        deadline = time.monotonic() + 3.0
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in self.processes:
            if process.is_alive():
                process.terminate()
                process.join(1.0)
            if process.is_alive():
                process.kill()
                process.join(1.0)
        for pipe in self.pipes:
            pipe.close()


def _receive(worker: int, pipe: Connection[Any, Any]) -> Report:
    """A publisher's next report; RuntimeError when it has gone away."""
    try:
        report: Report = pipe.recv()
    except (EOFError, OSError):
        raise RuntimeError(f"publisher {worker} exited unexpectedly") from None
    return report
