"""The live commands of ``twin``: ``emulate``, ``live`` and ``status``.

Registered on the main app by :mod:`twin.cli.app`. Each long-running command stops
cleanly on SIGINT/SIGTERM (sockets closed with linger 0).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
import zmq
from rich.console import Console
from rich.table import Table

from sync.addresses import Endpoints
from sync.fanout import RequestError, request_status
from twin.cli.common import (
    EXIT_BAD_INPUT,
    CommandOpt,
    ControlOpt,
    FanoutOpt,
    IngestOpt,
    JsonOpt,
    KeysOpt,
    SceneArg,
    SecondsOpt,
    SnapshotOpt,
    load_or_exit,
    stop_on_signals,
)
from twin.cli.live_parts import (
    record_failures,
    record_ingest_events,
    start_foxglove,
    start_lessons,
    start_recorder,
)
from twin.cli.record_path import FOXGLOVE_DEFAULT_PORT

log = logging.getLogger(__name__)

out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def emulate(
    scene: Path | None,
    fault: list[str],
    seed: int,
    seconds: float | None,
    ingest: str | None,
    stats: Path | None,
    noise: bool,
    wait_s: float,
    incidents_every_s: float = 0.0,
    *,
    keys: Path | None = None,
    command: str | None = None,
    t0_ns: int | None = None,
) -> None:
    """Run the hall emulator (see ``twin emulate --help``); with ``keys`` its gateways take
    commands from the twin's ``command`` channel; ``t0_ns`` is the time zero of fault times."""
    from twin.emulator.emulate import EmulatorError, HallEmulator
    from twin.emulator.faults import FaultSpecError, parse_faults

    loaded = load_or_exit(scene)
    try:
        faults = parse_faults(fault, [r.id for r in loaded.robots])
    except FaultSpecError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    endpoints = Endpoints.resolve(ingest=ingest, command=command)
    stop = stop_on_signals()
    try:
        emulator = HallEmulator(
            loaded,
            endpoints.ingest,
            faults=faults,
            seed=seed,
            noise=noise,
            incidents_every_s=incidents_every_s,
            keys=keys,
            command=endpoints.command,
            t0_ns=t0_ns,
        )
    except EmulatorError as exc:
        err.print(f"twin emulate: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    emulator.stats_path = stats
    try:
        if not emulator.wait_for_twin(wait_s):
            log.warning(
                "no twin subscribed at %s within %g s; publishing anyway", endpoints.ingest, wait_s
            )
        err.print(
            f"emulating {len(loaded.robots)} robots of {loaded.name!r} -> {endpoints.ingest}"
            + (f" with faults on {', '.join(sorted(faults))}" if faults else "")
            + (f"; commands from {endpoints.command}" if keys is not None else ""),
            markup=False,
        )
        emulator.run(duration_s=seconds, stop=stop)
    finally:
        emulator.close()
    summary = emulator.stats()
    if stats is not None:
        stats.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    err.print(
        f"emulated {summary['simulated_s']} s in {summary['elapsed_s']} s "
        f"(real-time factor {summary['realtime_factor']}, max lag {summary['max_lag_ms']} ms)",
        markup=False,
    )


def live(
    scene: Path | None,
    ingest: str | None,
    fanout: str | None,
    snapshot: str | None,
    seconds: float | None,
    tick_hz: float,
    display_hz: float,
    record: Path | None = None,
    monitors: bool = True,
    keys: Path | None = None,
    command: str | None = None,
    control: str | None = None,
    lessons: Path | None = None,
    use_lessons: bool = True,
    foxglove_port: int | None = None,
    foxglove_host: str = "127.0.0.1",
    raw_joints: bool = False,
    workers: int = 1,
) -> None:
    """Run the twin mirror (see ``twin live --help``); ``workers`` > 1: ingest sharded
    across that many processes; ``record``: an MCAP file to write
    (``raw_joints``: with the joint states' vendor frames);
    ``monitors``: detect failures (falls, limits, stale telemetry, collisions); ``keys``: a
    key directory, for the dispatch gate's command channel (none without);
    ``foxglove_port``: serve the hall over Foxglove's WebSocket protocol on
    ``foxglove_host`` at this port (0: any free one; None: not)."""
    from twin.cli.dispatch import start_gate
    from twin.failures.monitors import Monitors
    from twin.live.mirror import Mirror, MirrorError
    from twin.live.shards import ShardError

    loaded = load_or_exit(scene)
    recorder = None
    endpoints = Endpoints.resolve(ingest, fanout, snapshot, command, control)
    stop = stop_on_signals()
    from sync.keys import KeyDirError

    try:
        mirror = Mirror(
            loaded, endpoints, tick_hz=tick_hz, display_hz=display_hz, keys=keys, workers=workers
        )
    except ShardError as exc:
        err.print(f"twin live: {exc}", markup=False)
        raise typer.Exit(2) from None
    except KeyDirError as exc:  # telemetry keys: fails closed
        err.print(f"twin live: {exc}; no authenticated telemetry", markup=False)
        raise typer.Exit(2) from None
    except MirrorError as exc:
        err.print(f"twin live: {exc}", markup=False)
        raise typer.Exit(2) from None
    except OSError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(1) from None
    if monitors:
        mirror.monitors = Monitors()
    foxglove = None
    if foxglove_port is not None:
        foxglove = start_foxglove(loaded, foxglove_host, foxglove_port)
        if foxglove is None:
            mirror.close()
            raise typer.Exit(EXIT_BAD_INPUT)
        mirror.frame_sinks.append(foxglove)
        mirror.event_sinks.append(foxglove.event)
        err.print(f"foxglove: {foxglove.url} (read-only)", markup=False)
    gate = start_gate(mirror, keys, endpoints) if keys is not None else None
    if record is not None:
        recorder = start_recorder(record, scene, loaded, raw_joints=raw_joints)
        if recorder is None:
            mirror.close()
            raise typer.Exit(1)
        err.print(
            f"recording to {recorder.path.resolve()} (time zero {recorder.start_ns} ns)",
            markup=False,
        )
        mirror.frame_sinks.append(recorder)
        record_ingest_events(mirror, recorder)
        if mirror.monitors is not None:
            record_failures(mirror, recorder)
        if gate is not None:
            gate.listeners.append(recorder.event)
    if use_lessons and mirror.monitors is not None:
        store = start_lessons(mirror, loaded, lessons, recorder, gate)
        if gate is not None and store is not None:
            gate.lesson_store = store
            gate.courier.store = store
    bound = mirror.endpoints
    err.print(
        f"mirroring {loaded.name!r}: ingest {bound.ingest}"
        + (f" ({workers} ingest workers)" if workers > 1 else "")
        + f" fan-out {bound.fanout} snapshot {bound.snapshot}"
        + (
            f" command {gate.command_endpoint} control {gate.control_endpoint}"
            if gate is not None
            else " (no command channel)"
        ),
        markup=False,
    )
    try:
        mirror.run(stop=stop, duration_s=seconds)
    finally:
        totals = mirror.status()["totals"]
        mirror.close()
        if recorder is not None:
            recorder.close()
        if foxglove is not None:
            foxglove.close()
    err.print(
        f"received {totals['received']} messages ({totals['accepted']} accepted), "
        f"gaps {totals['gaps']}, refused {sum(totals['bad_frames'].values())}",
        markup=False,
    )
    if foxglove is not None:
        stopped = f" (stopped: {foxglove.error})" if foxglove.error else ""
        err.print(
            f"foxglove: {foxglove.shipped} updates served, {foxglove.deferred} display periods "
            f"waited for a busy server{stopped}",
            markup=False,
        )
    if recorder is not None:
        dropped = f", {recorder.dropped} dropped" if recorder.dropped else ""
        stopped = f" (recording stopped: {recorder.error})" if recorder.error else ""
        err.print(
            f"recorded {recorder.messages} messages to {recorder.path}{dropped}{stopped}",
            markup=False,
        )


def status(as_json: bool, snapshot: str | None, timeout_s: float) -> None:
    """Ask a running twin for its status (see ``twin status --help``)."""
    endpoints = Endpoints.resolve(snapshot=snapshot)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        report = request_status(context, endpoints.snapshot, timeout_s=timeout_s)
    except RequestError as exc:
        err.print(f"twin status: {exc} (is `twin live` running?)", markup=False)
        raise typer.Exit(1) from None
    finally:
        context.term()
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    table = Table(title=f"{report['scene']} (up {report['uptime_s']:.0f} s)", title_justify="left")
    columns = (
        "robot",
        "manufacturer",
        "liveness",
        "rate Hz",
        "gaps",
        "epoch",
        "lat p50 ms",
        "p99 ms",
        "in kB/s",
        "refused",
        "late/stale",
        "lessons",
    )
    for column in columns:
        table.add_column(column)
    for row in report["robots"]:
        style = {"LIVE": "green", "LATE": "yellow", "STALE": "red", "GONE": "dim"}.get(
            row["liveness"], ""
        )
        table.add_row(
            row["robot"],
            row["manufacturer"],
            f"[{style}]{row['liveness']}[/]",
            f"{row['rate_hz']:.0f}/{row['nominal_rate_hz']:.0f}",
            str(row["gaps"]),
            f"{row['epoch']:#x}"[:10],
            "-" if row["latency_ms_p50"] is None else f"{row['latency_ms_p50']:.2f}",
            "-" if row["latency_ms_p99"] is None else f"{row['latency_ms_p99']:.2f}",
            f"{row['in_bytes_per_s'] / 1000:.1f}",
            str(sum(row.get("refused", {}).values())),
            f"{row.get('went_late', 0)}/{row.get('went_stale', 0)}",
            ", ".join(row.get("lessons", [])) or "-",
        )
    out.print(table)
    totals = report["totals"]
    refused = ", ".join(f"{k} {v}" for k, v in sorted(totals["bad_frames"].items())) or "none"
    keys = "authenticated (keys)" if totals.get("telemetry_keys") else "not authenticated"
    out.print(
        f"{totals['live']}/{len(report['robots'])} live; received {totals['received']}, "
        f"accepted {totals['accepted']}, gaps {totals['gaps']}, joined mid-epoch "
        f"{totals.get('joined_mid_epoch', 0)}; refused: {refused}; telemetry {keys}",
        markup=False,
    )
    connections = totals.get("ingest_connections", {})
    requests = report.get("requests", {})
    out.print(
        "ingest connections: "
        + (", ".join(f"{k} {v}" for k, v in sorted(connections.items())) or "none")
        + f"; requests: {requests.get('snapshots', 0)} snapshots, "
        f"{requests.get('statuses', 0)} statuses, {requests.get('shed', 0)} shed",
        markup=False,
    )
    lessons = report.get("lessons", {})
    if lessons.get("enabled"):
        out.print(
            f"lessons: on ({lessons.get('database')}); {lessons.get('made', 0)} made from "
            f"{lessons.get('incidents', 0)} incidents",
            markup=False,
        )
    else:
        out.print(f"lessons: off ({lessons.get('why_off', '')})", markup=False)
    gate = report.get("dispatch")
    if gate is None:
        out.print("dispatch: no command channel (twin live runs without --keys)", markup=False)
    else:
        refused = ", ".join(f"{k} {v}" for k, v in sorted(gate["refused_by"].items())) or "none"
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(gate["outcomes"].items())) or "none"
        out.print(
            f"dispatch: {gate['requests']} requests, {gate['sent']} sent, "
            f"{len(gate['gateways'])} gateways connected; outcomes: {outcomes}; "
            f"refused by: {refused}",
            markup=False,
        )
        shared = gate.get("lessons")
        if shared is not None:
            out.print(
                f"lessons to gateways: {shared['sent']} sent, {shared['acked']} acknowledged, "
                f"{shared['waiting']} waiting, {shared['not_connected']} not connected",
                markup=False,
            )


def emulate_cmd(
    scene: SceneArg = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault",
            help="ROBOT:drop=P, ROBOT:delay=50ms, ROBOT:garbage=P, ROBOT:freeze@10s, "
            "ROBOT:disconnect@5s, ROBOT:restart@8s, ROBOT:fall@12s (repeatable).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the perturbed reality, noise and faults.")] = 0,
    seconds: SecondsOpt = None,
    ingest: IngestOpt = None,
    stats: Annotated[
        Path | None, typer.Option(help="Write sent/dropped counts as JSON here on exit.")
    ] = None,
    noise: Annotated[
        bool, typer.Option("--noise/--no-noise", help="Sensor noise on joints.")
    ] = True,
    wait_s: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for the twin to subscribe.")
    ] = 10.0,
    incidents_every_s: Annotated[
        float,
        typer.Option(
            "--incidents-every",
            min=0.0,
            help="Every this many seconds a random robot falls (helped up 15 s later); 0: never.",
        ),
    ] = 0.0,
    keys: KeysOpt = None,
    command: CommandOpt = None,
    t0_ns: Annotated[
        int | None,
        typer.Option(
            "--t0-ns",
            help="Time zero of --fault and incident times, ns since the Unix epoch (e.g. a "
            "recording's start); default: when the emulator starts.",
        ),
    ] = None,
) -> None:
    """Play the hall's hardware: robots doing their tasks in their own physics, over ZeroMQ."""
    emulate(
        scene, fault or [], seed, seconds, ingest, stats, noise, wait_s, incidents_every_s,
        keys=keys, command=command, t0_ns=t0_ns,
    )  # fmt: skip


def live_cmd(
    scene: SceneArg = None,
    ingest: IngestOpt = None,
    fanout: FanoutOpt = None,
    snapshot: SnapshotOpt = None,
    seconds: SecondsOpt = None,
    tick_hz: Annotated[float, typer.Option(min=1.0, help="World update rate.")] = 240.0,
    display_hz: Annotated[float, typer.Option(min=1.0, help="Fan-out rate to viewers.")] = 30.0,
    record: Annotated[
        Path | None,
        typer.Option(
            "--record",
            metavar="[PATH]",
            help="Record every accepted message to this MCAP file (canonical joint blocks, "
            "JSON, raw frames of all but joint states, Foxglove channels: docs/recordings.md); "
            "bare --record (last, or before another option): recordings/<UTC time>.mcap.",
        ),
    ] = None,
    raw_joints: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="With --record: also keep every joint state's vendor frame as received "
            "(/raw/js/<robot>; about 0.45 GB more per robot-hour).",
        ),
    ] = False,
    keys: KeysOpt = None,
    command: CommandOpt = None,
    control: ControlOpt = None,
    lessons: Annotated[
        Path | None,
        typer.Option(
            "--lessons",
            help="The lessons database \\[default: $HALL_TWIN_LESSONS or "
            "~/.local/state/hall-twin/lessons.sqlite3].",
        ),
    ] = None,
    use_lessons: Annotated[
        bool, typer.Option("--lessons-on/--no-lessons", help="Make lessons of incidents.")
    ] = True,
    foxglove: Annotated[
        int | None,
        typer.Option(
            "--foxglove",
            metavar="[PORT]",
            min=0,
            max=65535,
            help="Serve the hall live over Foxglove's WebSocket protocol (read-only: "
            "/foxglove/scene, /foxglove/tf) on this port (0: any free one); bare --foxglove: "
            f"{FOXGLOVE_DEFAULT_PORT}. Open ws://HOST:PORT in Foxglove or Lichtblick.",
        ),
    ] = None,
    foxglove_host: Annotated[
        str,
        typer.Option(
            "--foxglove-host", help="Address the Foxglove server binds (0.0.0.0: every one)."
        ),
    ] = "127.0.0.1",
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Ingest worker processes sharing the ingest port (TCP), each taking some of "
            "the gateways' connections: for machines with cores to spare "
            "(docs/scaling.md). 1: ingest in the twin's own thread.",
        ),
    ] = 1,
) -> None:
    """Mirror the live hall: receive telemetry, keep the world in step, serve viewers."""
    if raw_joints and record is None:
        err.print("twin live: --raw keeps raw frames in a recording: give --record too")
        raise typer.Exit(2)
    live(
        scene, ingest, fanout, snapshot, seconds, tick_hz, display_hz, record,
        keys=keys, command=command, control=control, lessons=lessons, use_lessons=use_lessons,
        foxglove_port=foxglove, foxglove_host=foxglove_host, raw_joints=raw_joints,
        workers=workers,
    )  # fmt: skip


def status_cmd(
    as_json: JsonOpt = False,
    snapshot: SnapshotOpt = None,
    timeout_s: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait.")] = 2.0,
) -> None:
    """Ask a running twin: each robot's liveness, rate, gaps, epoch, latency; totals."""
    status(as_json, snapshot, timeout_s)


def register(app: typer.Typer) -> None:
    """Add ``twin emulate``, ``twin live`` and ``twin status``."""
    app.command("emulate")(emulate_cmd)
    app.command("live")(live_cmd)
    app.command("status")(status_cmd)
