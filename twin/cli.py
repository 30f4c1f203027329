"""The ``twin`` command line: one entry point that wires scenes, robots and the world.

Bad input (a broken scene file, an unknown model) prints one line per problem to
stderr and exits with status 2; it never shows a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from robots import get_model, model_names
from scenes import SceneError, load_scene
from scenes.model import Scene
from twin import cli_dispatch, cli_live, cli_preview
from twin.summary import scene_summary

log = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2

app = typer.Typer(
    help="Digital twin of a humanoid-robot training hall.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
scene_app = typer.Typer(help="Validate and inspect hall scene files.", no_args_is_help=True)
app.add_typer(scene_app, name="scene")
cli_dispatch.register(app)  # twin keys init, twin dispatch

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

SceneArg = Annotated[
    Path | None,
    typer.Argument(
        help="Scene file (YAML); the default training hall when omitted.", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if verbose:  # our own debug messages, not every library's
        for package in ("twin", "sync", "viz", "scenes", "robots"):
            logging.getLogger(package).setLevel(logging.DEBUG)


def load_or_exit(scene: Path | None) -> Scene:
    """Load a scene, or print its problems and exit with status 2."""
    return _load(scene)


def _load(scene: Path | None) -> Scene:
    try:
        return load_scene(scene)
    except SceneError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False, soft_wrap=True)
        count = len(exc.problems)
        err.print(f"{count} problem{'s' if count != 1 else ''}; scene not loaded", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _print_summary(summary: dict[str, Any]) -> None:
    floor = summary["floor"]
    out.print(
        f"[bold]{summary['scene']}[/]: floor {floor['size_m'][0]:g} x {floor['size_m'][1]:g} m, "
        f"ceiling {floor['ceiling_m']:g} m"
    )
    robots = Table(title="Robots per manufacturer", title_justify="left")
    for column in ("manufacturer", "robots", "model", "DOF", "rate Hz", "ids / tasks"):
        robots.add_column(column)
    for maker in summary["manufacturers"]:
        mine = [r for r in summary["robots"] if r["manufacturer"] == maker["name"]]
        for model in maker["models"]:
            of_model = [r for r in mine if r["model"] == model]
            robots.add_row(
                maker["name"],
                str(len(of_model)),
                model,
                str(of_model[0]["dof"]),
                f"{of_model[0]['telemetry_rate_hz']:g}",
                ", ".join(f"{r['id']} ({r['task']})" for r in of_model),
            )
    out.print(robots)
    benches = Table(title="Workbenches", title_justify="left")
    for column in ("bench", "size m", "height m", "items"):
        benches.add_column(column)
    for bench in summary["benches"]:
        benches.add_row(
            bench["id"],
            "{:g} x {:g}".format(*bench["size_m"]),
            f"{bench['height_m']:g}",
            ", ".join(f"{i['id']} ({i['kind']})" for i in bench["items"]),
        )
    out.print(benches)
    cranes = Table(title="Gantry cranes", title_justify="left")
    for column in ("crane", "bridge x m", "trolley y m", "hook z m", "load kg"):
        cranes.add_column(column)
    for crane in summary["cranes"]:
        cranes.add_row(
            crane["id"],
            "{:g}..{:g}".format(*crane["bridge_travel_m"]),
            "{:g}..{:g}".format(*crane["trolley_travel_m"]),
            "{:g}..{:g}".format(*crane["hoist_travel_m"]),
            f"{crane['load_kg']:g}" if crane["load_kg"] is not None else "-",
        )
    out.print(cranes)
    panels = ", ".join(f"{p['id']} ({', '.join(p['shows'])})" for p in summary["panels"])
    sensors = ", ".join(f"{s['id']} ({s['kind']})" for s in summary["sensors"])
    out.print(f"LED panels: {panels or 'none'}")
    out.print(f"Sensors: {sensors or 'none'}")
    out.print(f"Data hub: {summary['hub']['id']}")


@scene_app.command("check")
def scene_check(scene: SceneArg = None, as_json: JsonOpt = False) -> None:
    """Validate a scene; print its robots per manufacturer, benches, cranes and panels."""
    summary = scene_summary(_load(scene))
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        _print_summary(summary)


@app.command("robots")
def robots_cmd(as_json: JsonOpt = False) -> None:
    """List the robot models the twin knows, with DOF, height and telemetry profile."""
    rows: list[dict[str, Any]] = []
    for name in model_names():
        model = get_model(name)
        rows.append(
            {
                "model": name,
                "manufacturer": model.manufacturer,
                "dof": model.dof,
                "height_m": round(model.height_m, 3),
                "telemetry_rate_hz": model.profile.rate_hz,
                "position_unit": model.profile.position_unit,
                "encoding": model.profile.encoding,
                "external": model.external,
                "urdf": str(model.urdf_path),
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="Robot models", title_justify="left")
    for column in ("model", "manufacturer", "DOF", "height m", "rate Hz", "unit", "encoding"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["model"] + (" (external)" if row["external"] else ""),
            row["manufacturer"],
            str(row["dof"]),
            f"{row['height_m']:.2f}",
            f"{row['telemetry_rate_hz']:g}",
            row["position_unit"],
            row["encoding"],
        )
    out.print(table)


@app.command("demo")
def demo(
    scene: SceneArg = None,
    seconds: Annotated[float, typer.Option(min=1.0, help="Length of the headless video.")] = 10.0,
    headless: Annotated[
        bool, typer.Option("--headless", help="No window: write a video and a screenshot.")
    ] = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for the video.")] = None,
    fault: Annotated[
        list[str] | None, typer.Option("--fault", help="Faults for the emulator (as twin emulate).")
    ] = None,
    record: Annotated[
        Path | None,
        typer.Option(
            "--record",
            metavar="[PATH]",
            help="Record the twin to this MCAP file; bare --record (last, or before another "
            "option): recordings/<UTC time>.mcap.",
        ),
    ] = None,
    incidents_every_s: Annotated[
        float,
        typer.Option(
            "--incidents-every",
            min=0.0,
            help="A random robot falls this often (s) and is helped up 15 s later; 0: never.",
        ),
    ] = 120.0,
) -> None:
    """Emulator + twin + viewer in one command: a window, or (headless) a video and a PNG."""
    from twin import cli_view
    from twin.world import World

    loaded = _load(scene)
    started = time.perf_counter()
    with World(loaded) as world:
        built_s = time.perf_counter() - started
        bodies = len(world.body_names())
    _print_summary(scene_summary(loaded))
    out.print(f"World built in {built_s:.2f} s ({bodies} bodies, PyBullet DIRECT).")
    cli_view.run_demo(
        scene,
        loaded,
        seconds=seconds,
        headless=headless,
        out_dir=out_dir,
        faults=fault or [],
        record=record,
        incidents_every_s=incidents_every_s,
    )


@app.command("view")
def view_cmd(
    scene: SceneArg = None,
    connect: Annotated[
        str | None,
        typer.Option(
            help="A live twin's fan-out, e.g. tcp://127.0.0.1:7702 (default: the scene at rest)."
        ),
    ] = None,
    snapshot: Annotated[
        str | None, typer.Option(help="Its snapshot endpoint \\[default: the fan-out's port + 1].")
    ] = None,
    screenshot: Annotated[
        Path | None, typer.Option(help="Write one frame as PNG and exit.")
    ] = None,
    video: Annotated[Path | None, typer.Option(help="Write an MP4 of --seconds and exit.")] = None,
    seconds: Annotated[float, typer.Option(min=0.1, help="Video length.")] = 10.0,
    kiosk: Annotated[
        bool, typer.Option(help="Full screen, no controls, a slow camera tour.")
    ] = False,
    colour_by: Annotated[
        str, typer.Option(help="manufacturer, effort, position or velocity.")
    ] = "manufacturer",
    lidar: Annotated[bool, typer.Option(help="Show a simulated LiDAR scan (toggle: l).")] = False,
    size: Annotated[str, typer.Option(help="Window or image size.")] = "1280x720",
) -> None:
    """The 3D viewer: live (--connect), the scene at rest, or off screen (--screenshot/--video)."""
    from twin import cli_view

    cli_view.run_viewer(
        _load(scene),
        connect=connect,
        snapshot=snapshot,
        screenshot=screenshot,
        video=video,
        seconds=seconds,
        kiosk=kiosk,
        colour_by=colour_by,
        lidar=lidar,
        size=size,
    )


@app.command("emulate")
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
    seconds: cli_live.SecondsOpt = None,
    ingest: cli_live.IngestOpt = None,
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
    keys: cli_dispatch.KeysOpt = None,
    command: cli_dispatch.CommandOpt = None,
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
    cli_live.emulate(
        scene, fault or [], seed, seconds, ingest, stats, noise, wait_s, incidents_every_s,
        keys=keys, command=command, t0_ns=t0_ns,
    )  # fmt: skip


@app.command("live")
def live_cmd(
    scene: SceneArg = None,
    ingest: cli_live.IngestOpt = None,
    fanout: cli_live.FanoutOpt = None,
    snapshot: cli_live.SnapshotOpt = None,
    seconds: cli_live.SecondsOpt = None,
    tick_hz: Annotated[float, typer.Option(min=1.0, help="World update rate.")] = 240.0,
    display_hz: Annotated[float, typer.Option(min=1.0, help="Fan-out rate to viewers.")] = 30.0,
    record: Annotated[
        Path | None,
        typer.Option(
            "--record",
            metavar="[PATH]",
            help="Record every accepted message to this MCAP file (raw frames + canonical JSON); "
            "bare --record (last, or before another option): recordings/<UTC time>.mcap.",
        ),
    ] = None,
    keys: cli_dispatch.KeysOpt = None,
    command: cli_dispatch.CommandOpt = None,
    control: cli_dispatch.ControlOpt = None,
) -> None:
    """Mirror the live hall: receive telemetry, keep the world in step, serve viewers."""
    cli_live.live(
        scene, ingest, fanout, snapshot, seconds, tick_hz, display_hz, record,
        keys=keys, command=command, control=control,
    )  # fmt: skip


@app.command("status")
def status_cmd(
    as_json: JsonOpt = False,
    snapshot: cli_live.SnapshotOpt = None,
    timeout_s: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait.")] = 2.0,
) -> None:
    """Ask a running twin: each robot's liveness, rate, gaps, epoch, latency; totals."""
    cli_live.status(as_json, snapshot, timeout_s)


@app.command("replay")
def replay_cmd(
    recording: Annotated[Path, typer.Argument(help="An MCAP file from `twin live --record`.")],
    event: Annotated[
        str | None,
        typer.Option("--event", help="Centre on this event id (as `twin failures` lists)."),
    ] = None,
    at: Annotated[float | None, typer.Option("--at", help="Start here (seconds).")] = None,
    before: Annotated[
        float | None, typer.Option("--before", min=0.0, help="Seconds before the event/--at.")
    ] = None,
    after: Annotated[
        float | None, typer.Option("--after", min=0.0, help="Seconds after the event/--at.")
    ] = None,
    speed: Annotated[float, typer.Option(min=0.1, max=10.0, help="Playback speed.")] = 1.0,
    loop: Annotated[bool, typer.Option("--loop", help="Loop the chosen window.")] = False,
    clip: Annotated[
        Path | None, typer.Option("--clip", help="Render the window to this MP4 and exit.")
    ] = None,
    size: Annotated[str, typer.Option(help="Window or video size.")] = "1280x720",
    ghost: Annotated[
        bool,
        typer.Option(
            "--ghost/--no-ghost",
            help="Draw the twin's prediction as a cyan ghost over robots in divergence.",
        ),
    ] = True,
) -> None:
    """Replay a recording in the viewer: scrub, jump to events, or cut a clip (--clip)."""
    from twin import replay

    replay.run_replay(
        recording, event_id=event, at_s=at, before_s=before, after_s=after, speed=speed,
        loop=loop, clip=clip, size=size, ghost=ghost,
    )  # fmt: skip


@app.command("failures")
def failures_cmd(
    recording: Annotated[Path, typer.Argument(help="A recording (twin live --record).")],
    as_json: JsonOpt = False,
) -> None:
    """List a recording's failures: falls, joints over limit, efforts, stale data, collisions."""
    from twin import failures

    failures.run(recording, as_json)


@app.command("resim")
def resim_cmd(
    recording: Annotated[Path, typer.Argument(help="A recording (twin live --record).")],
    at: Annotated[float, typer.Option("--at", help="Re-simulate from here (seconds).")],
    seconds: Annotated[
        float, typer.Option("--seconds", help="Simulated seconds to run on for.")
    ] = 10.0,
    settings: Annotated[
        list[str] | None,
        typer.Option("--set", help="friction=F or mass_scale=K (repeatable)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the emulated hall.")] = 0,
    record: Annotated[
        Path | None,
        typer.Option("--record", help="Output MCAP (default: <REC>-resim-<at>s.mcap beside it)."),
    ] = None,
) -> None:
    """What-if: re-simulate a recording from --at with physics, into a new recording."""
    from twin import resim

    resim.run(recording, at, seconds, settings or [], seed, record)


cli_preview.register(app)


def main() -> None:
    """Console-script entry point."""
    from twin.record_path import expand_bare_record

    app(args=expand_bare_record(sys.argv[1:]))


if __name__ == "__main__":
    main()
