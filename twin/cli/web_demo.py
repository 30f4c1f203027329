"""``twin demo`` in a browser: the twin and the emulator as child processes, the page here.

The page's URL is the first thing printed, within seconds: the web viewer starts while the
twin is still building its world, shows "Starting the twin", and connects when the twin's
fan-out address is known. The web viewer is light on purpose (no off-screen rendering; a
bounded update rate, and its threads at a lower priority), so on a 2-core machine the
emulator and the twin keep every robot LIVE.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Final

import typer
from rich.console import Console

from scenes.model import Scene
from twin.cli.common import EXIT_BAD_INPUT, stop_on_signals
from twin.cli.demo_hall import DemoError, DemoHall
from twin.cli.scene import print_summary
from twin.cli.summary import scene_summary
from twin.cli.web import BadAddress, check_port_free, start_viewer

log = logging.getLogger(__name__)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

_STARTUP_S: Final = 60.0


def _yield_to_the_twin(niceness: int = 10) -> None:
    """Lower the priority of this process's threads but the main one (the page's loop, viser's
    event loop and workers): on a busy machine the emulator and the twin come first, and a
    page may lag a little. The main thread keeps its priority: it starts the emulator, which
    inherits it."""
    main = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main and thread.native_id is not None:
            try:
                os.setpriority(os.PRIO_PROCESS, thread.native_id, niceness)
            except OSError as exc:  # not Linux, or not allowed: keep going
                log.debug("thread %s keeps its priority: %s", thread.name, exc)


def run_web_demo(
    scene_path: Path | None,
    scene: Scene,
    *,
    host: str,
    port: int,
    seconds: float | None,
    faults: list[str],
    record: Path | None,
    incidents_every_s: float,
) -> None:
    """Serve the demo's page, start the twin and the emulator, run until stopped."""
    from viz.web.live import LiveLink
    from viz.web.server import WebOptions, WebViewer

    stop = stop_on_signals()
    try:
        check_port_free(host, port)
    except BadAddress as exc:
        err.print(f"twin demo: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    demo = DemoHall(scene_path, record=record)
    link = LiveLink(None, None)
    viewer: WebViewer | None = None
    loop: threading.Thread | None = None
    try:
        options = WebOptions(host=host, port=port)
        try:
            viewer = start_viewer(
                lambda: WebViewer(scene, link, options=options, notice=lambda: link.notice),
                host,
                port,
            )
        except BadAddress as exc:
            err.print(f"twin demo: {exc}", markup=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        out.print(f"Open {viewer.url} in a browser (read-only; kiosk: {viewer.url}?kiosk)")
        print_summary(scene_summary(scene))
        loop = threading.Thread(target=viewer.run, args=(stop,), name="web", daemon=True)
        loop.start()
        _yield_to_the_twin()
        try:
            endpoints = demo.wait_for_twin(_STARTUP_S)
            link.connect_to(endpoints.fanout, endpoints.snapshot)
            demo.start_emulator(
                faults=faults, incidents_every_s=incidents_every_s, timeout_s=_STARTUP_S
            )
        except DemoError as exc:
            err.print(f"twin demo: {exc}", markup=False)
            raise typer.Exit(1) from None
        err.print(
            f"demo: emulator -> twin ({endpoints.ingest}) -> web ({endpoints.fanout}); "
            f"lessons to the gateways over {endpoints.command}; "
            f"status: twin status --snapshot {endpoints.snapshot}",
            markup=False,
        )
        if record is not None:
            err.print(f"demo: the twin records to {record.resolve()}", markup=False)
        started = time.monotonic()
        while not stop.wait(0.5):
            if seconds is not None and time.monotonic() - started >= seconds:
                break
            if demo.ended():
                err.print("twin demo: a child process ended; stopping", markup=False)
                break
    finally:
        stop.set()
        demo.stop()
        if loop is not None:
            loop.join(timeout=10.0)
        if viewer is not None:
            viewer.close()  # and its link
        else:
            link.close()
