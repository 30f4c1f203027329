"""What every ``twin`` command shares: exit codes, the scene argument, endpoint and key
options, loading a scene or exiting with its problems, and stopping on SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Final

import typer
from rich.console import Console

from scenes import SceneError, load_scene
from scenes.model import Scene
from sync.addresses import (
    ENV_COMMAND,
    ENV_CONTROL,
    ENV_FANOUT,
    ENV_INGEST,
    ENV_SNAPSHOT,
)
from sync.keys import ENV_KEYS

log = logging.getLogger(__name__)

EXIT_FAILED: Final = 1
"""A check ran and said no: a failed preview, a refused dispatch."""
EXIT_BAD_INPUT: Final = 2
"""Bad input: a broken file, an unknown id, a bad option; one line per problem, no traceback."""

err = Console(stderr=True, highlight=False, soft_wrap=True)

SceneArg = Annotated[
    Path | None,
    typer.Argument(
        help="Scene file (YAML); the default training hall when omitted.", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]

IngestOpt = Annotated[
    str | None,
    typer.Option(
        "--ingest",
        envvar=ENV_INGEST,
        help="Telemetry ingest endpoint \\[default: tcp://127.0.0.1:7700]",
    ),
]
FanoutOpt = Annotated[
    str | None,
    typer.Option(
        "--fanout",
        envvar=ENV_FANOUT,
        help="Viewer fan-out endpoint \\[default: tcp://127.0.0.1:7702]",
    ),
]
SnapshotOpt = Annotated[
    str | None,
    typer.Option(
        "--snapshot",
        envvar=ENV_SNAPSHOT,
        help="Snapshot/status endpoint \\[default: tcp://127.0.0.1:7703]",
    ),
]
SecondsOpt = Annotated[
    float | None,
    typer.Option(
        "--seconds", min=0.0, help="Stop after this many seconds (default: run until stopped)."
    ),
]

KeysOpt = Annotated[
    Path | None,
    typer.Option(
        "--keys",
        envvar=ENV_KEYS,
        help="Key directory (`twin keys init DIR`): enables the CURVE command channel.",
    ),
]
CommandOpt = Annotated[
    str | None,
    typer.Option(
        "--command",
        envvar=ENV_COMMAND,
        help="Command channel endpoint (with --keys) \\[default: tcp://127.0.0.1:7701]",
    ),
]
ControlOpt = Annotated[
    str | None,
    typer.Option(
        "--control",
        envvar=ENV_CONTROL,
        help="Dispatch control endpoint (with --keys) \\[default: tcp://127.0.0.1:7704]",
    ),
]


def load_or_exit(scene: Path | None) -> Scene:
    """Load a scene, or print its problems and exit with status 2."""
    try:
        return load_scene(scene)
    except SceneError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False, soft_wrap=True)
        count = len(exc.problems)
        err.print(f"{count} problem{'s' if count != 1 else ''}; scene not loaded", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so a long-running command stops cleanly."""
    stop = threading.Event()

    def _handler(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)
    return stop


def lower_priority(niceness: int = 0, *, idle: bool = False, every_thread: bool = False) -> None:
    """Lower the calling thread's CPU priority (threads and child processes it starts from
    now on inherit it): by ``niceness``, and with ``idle`` to SCHED_IDLE (only the CPU time
    no other process wants: any of them preempts it at once). ``every_thread``: the threads
    already running too (a library's own, started at import), where Linux lists them. Where
    not allowed, keep going as it is."""
    threads = [0]
    tasks = Path("/proc/self/task")
    if every_thread and tasks.is_dir():
        threads = [int(task.name) for task in tasks.iterdir()]
    for thread in threads:
        try:
            if niceness > 0:
                now = os.getpriority(os.PRIO_PROCESS, thread)
                os.setpriority(os.PRIO_PROCESS, thread, min(19, now + niceness))
            if idle and hasattr(os, "SCHED_IDLE"):
                os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
        except OSError as exc:  # not allowed, or a thread that just ended
            log.debug("thread %d keeps its priority: %s", thread, exc)
