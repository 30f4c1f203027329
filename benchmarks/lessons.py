"""Lessons: how fast a failure becomes a lesson in every concerned gateway, how fast incidents
are grouped offline, and what lessons cost the twin's ingest.

Usage: ``python benchmarks/lessons.py [--seconds 40] [--rounds 2] [--json]``.

Runs the default hall twice, as ``twin demo`` does (``twin live`` with a command channel
behind temporary keys, and ``twin emulate`` sending with those keys and acknowledging
lessons; :class:`twin.cli.demo_hall.DemoHall`), each for ``--seconds``, with the same faults:
``T3-01:lose_grip@5s`` (a dropped grasp: a lesson for the four robots whose loops grasp) and
``K1-03:fall@15s``, ``H2-02:fall@25s`` (falls: lessons for every walking and squatting robot):

* runs with lessons on, recorded, each followed by one with ``--no-lessons``, recorded the
  same way (``--rounds`` pairs: on, off, on, off).

Figures:

* ``share``: per lesson of the runs with lessons on, from the twin's recording: ``settle_s``
  (the incident's first failure event recorded -> the lesson event: the wait until its cause
  is settled: none for a fall, :data:`twin.failures.incidents.UPRIGHT_DROP_LEAD_S` for a grasp
  an upright robot dropped, :data:`twin.failures.incidents.CAUSE_LEAD_S` for other causes),
  ``send_to_acks_s`` (lesson event -> the last concerned gateway's acknowledgement recorded
  by the twin) and ``failure_to_all_acks_s`` (their sum: first failure event -> the lesson
  acknowledged by every concerned gateway). Target: ``failure_to_all_acks_s < 1`` in the
  default hall.
* ``offline``: the first run's recording read back: ``failures_x_realtime`` (``twin failures``'s
  :func:`twin.failures.offline.failure_report`: the recorded failure events grouped into
  incidents; recorded seconds per wall second, median of 5), ``detect_x_realtime`` (the
  detectors run again over the joint, base and heartbeat channels, as for a recording made
  without monitors, then grouped; median of 3), ``grouping_events_per_s`` (the grouping
  alone, on the run's failure events repeated to 100,000), and the baseline
  ``mcap_reader_x_realtime`` (the ``mcap`` library's reader over every message, decoding
  nothing). Target: >= 50x real time.
* ``ingest``: each run's per-robot ``latency_ms_p99`` from ``twin status`` (stamp -> applied
  in the world, with the twin's clock offset estimate), polled every 2 s after a 6 s
  warm-up: per run the median over polls of the median and of the worst robot;
  ``p99_ms_lessons_on``/``_off``: the median over runs of the first; ``p99_on_vs_off`` their
  ratio. Also every robot's ``went_stale``.

The runs share the machine in turn; the machine may be busy: quote medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
import zmq

from benchmarks.machine import machine_info, print_result
from sync.fanout import RequestError, request_status
from twin.cli.demo_hall import DemoHall
from twin.failures.events import FailureEvent
from twin.failures.incidents import group_incidents
from twin.failures.offline import detect_offline, failure_report
from twin.record.recording import open_recording
from twin.record.schemas import EventMsg

FAULTS = ["T3-01:lose_grip@5s", "K1-03:fall@15s", "H2-02:fall@25s"]
TARGET_SHARE_S = 1.0
TARGET_OFFLINE_X = 50.0
WARMUP_S = 6.0
POLL_S = 2.0
STARTUP_S = 90.0


def run_hall(seconds: float, record: Path, *, lessons: bool) -> dict[str, Any]:
    """One run of the demo's hall; the polled ingest figures."""
    demo = DemoHall(None, record=record, twin_args=() if lessons else ("--no-lessons",))
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    polls: list[tuple[float, float]] = []
    stale: dict[str, int] = {}
    status: dict[str, Any] = {}
    try:
        endpoints = demo.wait_for_twin(STARTUP_S)
        demo.start_emulator(faults=FAULTS, incidents_every_s=0.0, timeout_s=STARTUP_S)
        started = time.monotonic()
        next_poll = started + WARMUP_S
        while time.monotonic() - started < seconds:
            time.sleep(max(0.0, next_poll - time.monotonic()))  # a benchmark's poll period
            next_poll += POLL_S
            try:
                status = request_status(context, endpoints.snapshot, timeout_s=2.0)
            except RequestError:
                continue
            p99 = [r["latency_ms_p99"] for r in status["robots"] if r["latency_ms_p99"]]
            if p99:
                polls.append((statistics.median(p99), max(p99)))
            stale = {r["robot"]: r["went_stale"] for r in status["robots"]}
    finally:
        demo.stop()
        context.destroy(linger=0)
    return {
        "lessons": lessons,
        "polls": len(polls),
        "p99_ms_median_robot": _median([p[0] for p in polls]),
        "p99_ms_worst_robot": _median([p[1] for p in polls]),
        "went_stale": stale,
        "lessons_status": status.get("dispatch", {}).get("lessons", {}).get("acked"),
    }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def share_figures(record: Path) -> list[dict[str, Any]]:
    """Per lesson of a recording: settle, send -> last ack, failure -> last ack."""
    failures: list[tuple[int, FailureEvent]] = []
    lessons: list[tuple[int, dict[str, Any]]] = []
    acks: list[tuple[int, str, str]] = []
    for message in open_recording(record).iter_messages(["/events"]):
        event = msgspec.json.decode(message.data, type=EventMsg)
        if event.kind == "failure":
            failures.append(
                (message.log_time_ns, msgspec.json.decode(event.detail, type=FailureEvent))
            )
        elif event.kind == "lesson":
            lessons.append((message.log_time_ns, json.loads(event.detail)))
        elif event.kind == "lesson_ack":
            acks.append((message.log_time_ns, json.loads(event.detail)["lesson"], event.source))
    seen_at = {f.id: t for t, f in failures}
    first_of = {i.id: seen_at[i.events[0].id] for i in group_incidents([f for _, f in failures])}
    rows = []
    for lesson_ns, detail in lessons:
        concerned = set(detail["concerns"])
        last: dict[str, int] = {}
        for ack_ns, lesson_id, robot in acks:
            if lesson_id == detail["lesson"] and ack_ns >= lesson_ns and robot not in last:
                last[robot] = ack_ns
        first_ns = first_of.get(detail["incident"])
        all_acked = concerned <= set(last)
        done_ns = max(last.values()) if all_acked and last else None
        rows.append(
            {
                "lesson": detail["lesson"],
                "cause": detail["kind"],
                "robot": detail["robot"],
                "concerned": len(concerned),
                "acked": len(set(last) & concerned),
                "settle_s": _s(lesson_ns - first_ns) if first_ns is not None else None,
                "send_to_acks_s": _s(done_ns - lesson_ns) if done_ns is not None else None,
                "failure_to_all_acks_s": (
                    _s(done_ns - first_ns) if done_ns is not None and first_ns is not None else None
                ),
            }
        )
    return rows


def _s(ns: int) -> float:
    return round(ns / 1e9, 4)


def offline_figures(record: Path) -> dict[str, Any]:
    """How fast a recording's failures are grouped (and found) again, beside a bare read."""
    from mcap.reader import make_reader

    recording = open_recording(record)
    summary = recording.summary()
    recorded_s = (summary["end_ns"] - summary["start_ns"]) / 1e9

    def timed(work: Any, repeats: int) -> float:
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            work()
            runs.append(time.perf_counter() - started)
        return statistics.median(runs)

    def bare_read() -> None:
        with record.open("rb") as stream:
            for _ in make_reader(stream).iter_messages():
                pass

    report_s = timed(lambda: failure_report(record), 5)
    detect_s = timed(lambda: group_incidents(detect_offline(open_recording(record))), 3)
    bare_s = timed(bare_read, 3)
    events = [
        msgspec.json.decode(msgspec.json.decode(m.data, type=EventMsg).detail, type=FailureEvent)
        for m in recording.iter_messages(["/events"])
        if b'"failure"' in m.data
    ]
    many = (
        [
            msgspec.structs.replace(
                e, id=f"F{k:06d}", stamp_ns=e.stamp_ns + k // len(events) * 10**11
            )
            for k, e in enumerate(events * (100_000 // max(1, len(events))))
        ]
        if events
        else []
    )
    group_s = timed(lambda: group_incidents(many), 3) if many else None
    return {
        "recorded_s": round(recorded_s, 1),
        "failure_events": len(events),
        "incidents": len(failure_report(record)["incidents"]),
        "failures_x_realtime": round(recorded_s / report_s, 1),
        "detect_x_realtime": round(recorded_s / detect_s, 1),
        "grouping_events_per_s": round(len(many) / group_s) if group_s else None,
        "mcap_reader_x_realtime": round(recorded_s / bare_s, 1),
        "target_x_realtime": TARGET_OFFLINE_X,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--rounds", type=int, default=2, help="on/off pairs of runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-lessons-") as folder:
        work = Path(folder)
        os.environ["HALL_TWIN_LESSONS"] = str(work / "lessons.sqlite3")
        on: list[dict[str, Any]] = []
        off: list[dict[str, Any]] = []
        share: list[dict[str, Any]] = []
        for round_ in range(args.rounds):  # on, off, on, off, ...: the load drifts less
            on.append(run_hall(args.seconds, work / f"on{round_}.mcap", lessons=True))
            off.append(run_hall(args.seconds, work / f"off{round_}.mcap", lessons=False))
            share += share_figures(work / f"on{round_}.mcap")
        offline = offline_figures(work / "on0.mcap")
    totals = [r["failure_to_all_acks_s"] for r in share if r["failure_to_all_acks_s"] is not None]
    p_on = _median([r["p99_ms_median_robot"] for r in on if r["p99_ms_median_robot"]])
    p_off = _median([r["p99_ms_median_robot"] for r in off if r["p99_ms_median_robot"]])
    result = {
        "benchmark": "lessons",
        "seconds": args.seconds,
        "faults": FAULTS,
        "share": share,
        "failure_to_all_acks_s_median": _median(totals),
        "failure_to_all_acks_s_max": max(totals) if totals else None,
        "target_share_s": TARGET_SHARE_S,
        "meets_share_target": bool(totals) and max(totals) < TARGET_SHARE_S,
        "offline": offline,
        "meets_offline_target": offline["failures_x_realtime"] >= TARGET_OFFLINE_X,
        "ingest": {"lessons_on": on, "lessons_off": off},
        "p99_ms_lessons_on": p_on,
        "p99_ms_lessons_off": p_off,
        "p99_on_vs_off": round(p_on / p_off, 3) if p_on and p_off else None,
        "machine": machine_info(),
    }
    print_result(result, as_json=args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
