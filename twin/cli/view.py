"""The viewer commands of ``twin``: ``view`` (live, static, off screen) and ``demo``.

``twin demo`` wires the whole product in one command: the hall emulator and the twin as
child processes, and the viewer on the twin's fan-out; a window where there is a
display, else (or with ``--headless``) a short video and a screenshot.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from scenes.model import Scene
from twin.cli.common import EXIT_BAD_INPUT, SceneArg, load_or_exit, lower_priority
from twin.cli.demo_hall import DemoError, DemoHall
from twin.cli.scene import print_summary
from twin.cli.summary import scene_summary

if TYPE_CHECKING:
    from viz.viewer import HallViewer

log = logging.getLogger(__name__)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_STARTUP_S = 60.0


def snapshot_for(fanout: str) -> str:
    """The snapshot endpoint beside a fan-out endpoint: same host, port + 1."""
    match = re.match(r"^(.*):(\d+)$", fanout)
    if match is None:
        raise typer.BadParameter(
            f"cannot derive a snapshot endpoint from {fanout!r}; give --snapshot"
        )
    return f"{match.group(1)}:{int(match.group(2)) + 1}"


def has_display() -> bool:
    """True where a window can open (X11 or Wayland)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_viewer(
    scene: Scene,
    *,
    connect: str | None,
    snapshot: str | None,
    screenshot: Path | None,
    video: Path | None,
    seconds: float,
    kiosk: bool,
    colour_by: str,
    lidar: bool,
    size: str,
    mesh_triangles: int | None = None,
) -> None:
    """Open the viewer on a source and show it, or write a screenshot/video;
    ``mesh_triangles``: the triangle budget of each robot's mesh visuals (default 20k)."""
    import pyvista as pv

    from viz.screen import parse_size
    from viz.sources import LiveSource, SourceError, StaticSource
    from viz.viewer import COLOUR_MODES, HallViewer

    try:
        window = parse_size(size)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if colour_by not in COLOUR_MODES:
        raise typer.BadParameter(f"--colour-by must be one of {', '.join(COLOUR_MODES)}")
    off_screen = screenshot is not None or video is not None or not has_display()
    if off_screen:
        pv.OFF_SCREEN = True
    source: LiveSource | StaticSource
    if connect:
        try:
            source = LiveSource(connect, snapshot or snapshot_for(connect))
        except SourceError as exc:
            err.print(f"twin view: {exc} (is `twin live` running?)", markup=False)
            raise typer.Exit(1) from None
    else:
        source = StaticSource(scene)
    viewer = HallViewer(
        scene,
        source,
        off_screen=off_screen,
        window_size=window,
        colour_by=colour_by,  # type: ignore[arg-type]
        kiosk=kiosk,
        lidar=lidar,
        **({} if mesh_triangles is None else {"triangles_per_robot": mesh_triangles}),
    )
    try:
        if video is not None:
            frames = viewer.record(video, seconds)
            out.print(f"video: {video} ({frames} frames, {seconds:g} s)", markup=False)
        if screenshot is not None:
            viewer.screenshot(screenshot)
            out.print(f"screenshot: {screenshot}", markup=False)
        if video is None and screenshot is None:
            if off_screen:
                err.print("no display here: use --screenshot PNG or --video MP4", markup=False)
                raise typer.Exit(1)
            _interactive(viewer, kiosk)
    finally:
        viewer.close()


def _interactive(viewer: HallViewer, kiosk: bool) -> None:
    from viz.viewer import COLOUR_MODES

    plotter = viewer.plotter

    ready = False

    def tick(_step: int) -> None:
        nonlocal ready
        viewer.update()
        plotter.render()
        if not ready:  # the window is mapped and drawn: say where the robots are
            ready = True
            log.info("viewer ready; robots on screen: %s", _on_screen(viewer))

    if not kiosk:

        def picked(_point: object, picker: object) -> None:
            point = picker.GetPointId()  # type: ignore[attr-defined]
            actor = picker.GetActor()  # type: ignore[attr-defined]
            if point >= 0 and actor is viewer.robot_actor:
                viewer.select(viewer.robots.robot_of_point(int(point)))
            plotter.render()

        plotter.pickable_actors = [viewer.robot_actor]  # clicks go to robots, not the floor
        plotter.enable_point_picking(
            callback=picked,
            use_picker=True,
            left_clicking=True,
            show_message=False,
            show_point=False,
            pickable_window=False,
        )

        def cycle_colour() -> None:
            modes = list(COLOUR_MODES)
            viewer.set_colour_by(modes[(modes.index(viewer.colour_by) + 1) % len(modes)])  # type: ignore[arg-type]

        plotter.add_key_event("c", cycle_colour)
        plotter.add_key_event("f", lambda: viewer.flows.set_visible(not viewer.flows.visible))
        plotter.add_key_event("l", lambda: viewer.show_lidar(viewer.lidar_actor is None))
        plotter.add_key_event("h", viewer.home_camera)
        plotter.add_key_event("Escape", lambda: viewer.select(None))
        plotter.add_text(
            "click a robot: its joints | c: colour by | f: flows | l: LiDAR | h: home | q: quit",
            position="lower_left",
            font_size=9,
            color="black",
        )
    viewer.update()
    plotter.add_timer_event(max_steps=10**9, duration=33, callback=tick)
    plotter.show(full_screen=kiosk, auto_close=False)


def _on_screen(viewer: HallViewer) -> str:
    from viz.screen import robots_on_screen

    return " ".join(f"{rid}@{x},{y}" for rid, (x, y) in robots_on_screen(viewer).items())


def _wait_all_live(snapshot: str, *, timeout_s: float) -> None:
    """Wait (polling the twin's status) until every robot is LIVE, or warn on timeout."""
    import zmq

    from sync.fanout import RequestError, request_status

    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                status = request_status(context, snapshot, timeout_s=2.0)
            except RequestError:
                continue
            if status["robots"] and all(r["liveness"] == "LIVE" for r in status["robots"]):
                return
            time.sleep(0.1)  # a status poll, not a wait for a condition we could block on
        log.warning("not every robot is LIVE after %g s; showing what there is", timeout_s)
    finally:
        context.destroy(linger=0)


def run_demo(
    scene_path: Path | None,
    scene: Scene,
    *,
    seconds: float,
    headless: bool,
    out_dir: Path | None,
    faults: list[str],
    record: Path | None = None,
    incidents_every_s: float = 0.0,
) -> None:
    """Emulator + twin + viewer in one command; ``record``: the twin records to this file."""
    # a terminated demo (SIGTERM) unwinds like Ctrl-C, so its children are stopped too
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    demo = DemoHall(scene_path, record=record)
    try:
        try:
            endpoints = demo.wait_for_twin(_STARTUP_S)
            demo.start_emulator(
                faults=faults, incidents_every_s=incidents_every_s, timeout_s=_STARTUP_S
            )
        except DemoError as exc:
            err.print(f"twin demo: {exc}", markup=False)
            raise typer.Exit(1) from None
        ingest, fanout, snapshot = endpoints.ingest, endpoints.fanout, endpoints.snapshot
        err.print(
            f"demo: emulator -> twin ({ingest}) -> viewer ({fanout}); lessons to the "
            f"gateways over {endpoints.command}",
            markup=False,
        )
        if record is not None:
            err.print(f"demo: the twin records to {record.resolve()}", markup=False)
        _wait_all_live(snapshot, timeout_s=_STARTUP_S)
        if headless or not has_display():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            folder = (out_dir or Path("out") / f"demo-{stamp}").resolve()
            folder.mkdir(parents=True, exist_ok=True)
            # the off-screen renderer yields to the twin and the emulator (started before,
            # they keep their priority): on a 2-core machine it starved them (robots STALE)
            lower_priority(10)
            run_viewer(
                scene,
                connect=fanout,
                snapshot=snapshot,
                screenshot=folder / "hall.png",
                video=folder / "hall.mp4",
                seconds=seconds,
                kiosk=False,
                colour_by="manufacturer",
                lidar=False,
                size="1280x720",
            )
        else:
            run_viewer(
                scene,
                connect=fanout,
                snapshot=snapshot,
                screenshot=None,
                video=None,
                seconds=seconds,
                kiosk=False,
                colour_by="manufacturer",
                lidar=False,
                size="1280x720",
            )
    finally:
        demo.stop()


def demo(
    scene: SceneArg = None,
    seconds: Annotated[
        float | None,
        typer.Option(
            min=1.0, help="Length of the video \\[10]; the web demo's run (default: until stopped)."
        ),
    ] = None,
    headless: Annotated[
        bool, typer.Option("--headless", help="No page, no window: write a video and a screenshot.")
    ] = False,
    video: Annotated[
        bool, typer.Option("--video", help="Write a video and a screenshot (as --headless).")
    ] = False,
    window: Annotated[
        bool, typer.Option("--window", help="The desktop viewer's window instead of a web page.")
    ] = False,
    port: Annotated[int, typer.Option(min=0, max=65535, help="The web page's HTTP port.")] = 8080,
    host: Annotated[
        str, typer.Option(help="Serve the page on this address; 0.0.0.0 for other machines.")
    ] = "127.0.0.1",
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
    """Emulator + twin + a web page of the live hall (its URL first); --video: a video and a
    PNG; --window: the desktop viewer."""
    from twin.world.world import World

    loaded = load_or_exit(scene)
    from twin.emulator.faults import FaultSpecError, parse_faults

    try:  # before anything starts: a bad --fault is one line and exit 2
        parse_faults(fault or [], [r.id for r in loaded.robots])
    except FaultSpecError as exc:
        err.print(f"twin demo: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if not (headless or video or window):
        from twin.cli.web_demo import run_web_demo

        run_web_demo(
            scene,
            loaded,
            host=host,
            port=port,
            seconds=seconds,
            faults=fault or [],
            record=record,
            incidents_every_s=incidents_every_s,
        )
        return
    started = time.perf_counter()
    with World(loaded) as world:
        built_s = time.perf_counter() - started
        bodies = len(world.body_names())
    print_summary(scene_summary(loaded))
    out.print(f"World built in {built_s:.2f} s ({bodies} bodies, PyBullet DIRECT).")
    run_demo(
        scene,
        loaded,
        seconds=10.0 if seconds is None else seconds,
        headless=headless or video,
        out_dir=out_dir,
        faults=fault or [],
        record=record,
        incidents_every_s=incidents_every_s,
    )


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
    mesh_triangles: Annotated[
        int | None,
        typer.Option(
            min=100,
            max=2_000_000,
            help="Triangles per robot its mesh visuals are decimated to \\[default: 20000]; "
            "fewer keep the frame rate of a large hall on a software renderer.",
        ),
    ] = None,
) -> None:
    """The 3D viewer: live (--connect), the scene at rest, or off screen (--screenshot/--video)."""

    run_viewer(
        load_or_exit(scene),
        connect=connect,
        snapshot=snapshot,
        screenshot=screenshot,
        video=video,
        seconds=seconds,
        kiosk=kiosk,
        colour_by=colour_by,
        lidar=lidar,
        size=size,
        mesh_triangles=mesh_triangles,
    )


def register(app: typer.Typer) -> None:
    """Add ``twin demo`` and ``twin view``."""
    app.command("demo")(demo)
    app.command("view")(view_cmd)
