"""``twin web``: the live floor (or a recording) served to browsers, read-only.

``twin web [SCENE] [--connect tcp://HOST:7702] [--port 8080] [--host 127.0.0.1] [--kiosk]``
serves the hall with viser (:mod:`viz.web`) and prints its URL; ``--processes N`` serves it
from N processes at that one URL, each its own reader of the fan-out, for crowds one core
cannot serve (:mod:`viz.web.processes`); ``--replay REC.mcap`` serves
a recording instead, on the replay source ``twin replay`` uses, with a timeline, play/pause,
speed and "next failure" shared by every page (:mod:`viz.web.replay`). A bad ``--connect``
address or a port in use is one line on stderr and exit status 2, and so is a file that is
not a readable recording; a damaged or cut recording is served with one warning line (and the
warning on its pages). A twin that is not running yet is not an error: the page says so and
connects when the twin comes.
"""

from __future__ import annotations

import enum
import errno
import logging
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer
from rich.console import Console

from sync.addresses import DEFAULT_FANOUT
from twin.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    SceneArg,
    load_or_exit,
    lower_priority,
    stop_on_signals,
)

if TYPE_CHECKING:
    from viz.web.server import WebOptions, WebViewer

log = logging.getLogger(__name__)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Priority(enum.StrEnum):
    """``twin web --priority``: ``idle`` (the default) runs the server at SCHED_IDLE, on the
    CPU time nothing else wants, so the twin and the gateways on the same machine are never
    kept waiting by it (``benchmarks/web.py``: the twin's ingest p99 with 20 pages rose 14 %
    at idle against 87-133 % at the twin's priority); ``low`` lowers it by nice 10;
    ``normal`` keeps it."""

    IDLE = "idle"
    LOW = "low"
    NORMAL = "normal"


def yield_priority(priority: Priority) -> None:
    """Lower this thread's priority as ``--priority`` says (before any thread starts: they
    inherit it)."""
    low, idle = priority is Priority.LOW, priority is Priority.IDLE
    lower_priority(10 if low else 0, idle=idle, every_thread=True)


_ENDPOINT: Final = re.compile(
    r"^tcp://(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$"
)


class BadAddress(ValueError):
    """A ``--connect`` endpoint or a web address that cannot be used."""


def fanout_endpoints(connect: str, snapshot: str | None) -> tuple[str, str]:
    """The fan-out endpoint and its snapshot endpoint (port + 1 unless given); raises
    :class:`BadAddress` for anything but ``tcp://HOST:PORT`` with a host that resolves."""
    for endpoint in (connect, snapshot) if snapshot else (connect,):
        match = _ENDPOINT.match(endpoint)
        if match is None or not 0 < int(match.group("port")) < 65535:
            raise BadAddress(f"{endpoint!r} is not a tcp://HOST:PORT endpoint")
        host = match.group("host").strip("[]")
        try:
            socket.getaddrinfo(host, None)
        except OSError as exc:
            raise BadAddress(f"{endpoint!r}: cannot resolve {host!r} ({exc.strerror})") from None
    if snapshot is None:
        match = _ENDPOINT.match(connect)
        assert match is not None  # checked above
        snapshot = f"tcp://{match.group('host')}:{int(match.group('port')) + 1}"
    return connect, snapshot


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`BadAddress` if ``host:port`` cannot be listened on (in use, or no such
    address here). Port 0 asks for any free port and always passes."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise BadAddress(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _name, address = infos[0]
    probe = socket.socket(family, kind, proto)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        probe.listen(1)
    except OSError as exc:
        why = "port in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise BadAddress(f"cannot listen on {host}:{port}: {why}") from None
    finally:
        probe.close()


def start_viewer(build: Callable[[], WebViewer], host: str, port: int) -> WebViewer:
    """Build the viewer (``build()``), checking it got the port asked for (viser would
    quietly take the next free one)."""
    viewer = build()
    got = viewer.server.get_port()
    if port and got != port:
        viewer.close()
        raise BadAddress(f"cannot listen on {host}:{port}: port in use")
    return viewer


def serve(viewer: WebViewer, *, seconds: float | None, stop: threading.Event) -> None:
    """Run the viewer's loop until ``stop`` (or for ``seconds``), then close it."""
    timer = None
    if seconds is not None:
        timer = threading.Timer(seconds, stop.set)
        timer.daemon = True
        timer.start()
    try:
        viewer.run(stop)
    finally:
        if timer is not None:
            timer.cancel()
        viewer.close()


def web_cmd(
    scene: SceneArg = None,
    connect: Annotated[
        str, typer.Option(help="The live twin's fan-out (its snapshot endpoint: port + 1).")
    ] = DEFAULT_FANOUT,
    snapshot: Annotated[
        str | None, typer.Option(help="Its snapshot endpoint \\[default: the fan-out's port + 1].")
    ] = None,
    port: Annotated[int, typer.Option(min=0, max=65535, help="HTTP port; 0: any free one.")] = 8080,
    host: Annotated[
        str, typer.Option(help="Address to serve on; 0.0.0.0 for other machines.")
    ] = "127.0.0.1",
    kiosk: Annotated[
        bool, typer.Option(help="Every page: no controls, a slow camera tour (or add ?kiosk).")
    ] = False,
    replay: Annotated[
        Path | None, typer.Option(help="Serve this recording (MCAP) with a timeline instead.")
    ] = None,
    rate_hz: Annotated[
        float, typer.Option("--rate", min=1.0, max=60.0, help="Updates per second to each page.")
    ] = 30.0,
    seconds: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this long (default: until stopped).")
    ] = None,
    priority: Annotated[
        Priority,
        typer.Option(
            help="CPU priority: idle (only time nothing else wants: the twin on this machine "
            "never waits for the pages), low (nice 10) or normal."
        ),
    ] = Priority.IDLE,
    processes: Annotated[
        int,
        typer.Option(
            help="Server processes at the one URL (1 or more), each its own reader of the "
            "fan-out, the pages spread over them (Linux SO_REUSEPORT): for a crowd of pages "
            "one process (one core) cannot serve. A live twin only."
        ),
    ] = 1,
) -> None:
    """Serve the hall to browsers: many read-only pages of the live twin (or a recording)."""
    if processes < 1:
        err.print(f"twin web: --processes must be 1 or more, not {processes}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    if processes > 1 and replay is not None:
        err.print(
            "twin web: --processes applies to a live twin; a recording's clock is shared by "
            "every page, in one process",
            markup=False,
        )
        raise typer.Exit(EXIT_BAD_INPUT)
    from viz.web.server import WebOptions, WebViewer

    yield_priority(priority)  # before any thread starts: viser's threads inherit it

    options = WebOptions(host=host, port=port, rate_hz=rate_hz, kiosk=kiosk)
    if processes > 1:
        _serve_processes(processes, scene, connect, snapshot, options, seconds=seconds)
        return
    try:
        check_port_free(host, port)
        if replay is not None:
            viewer = _replay_viewer(replay, options)
        else:
            fanout, snap = fanout_endpoints(connect, snapshot)
            from viz.web.live import LiveLink

            hall = load_or_exit(scene)
            link = LiveLink(fanout, snap)
            viewer = start_viewer(
                lambda: WebViewer(hall, link, options=options, notice=lambda: link.notice),
                host,
                port,
            )
    except BadAddress as exc:
        err.print(f"twin web: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    stop = stop_on_signals()
    err.print(f"twin web: {viewer.url} (read-only; kiosk: {viewer.url}?kiosk)", markup=False)
    warned = _warning(viewer)
    if warned:
        err.print(f"twin web: warning: {warned}", markup=False)
    serve(viewer, seconds=seconds, stop=stop)
    late = _warning(viewer)  # damage met while playing (a chunk read only then)
    if late and late != warned:
        err.print(f"twin web: warning: {late}", markup=False)


def _serve_processes(
    count: int,
    scene: Path | None,
    connect: str,
    snapshot: str | None,
    options: WebOptions,
    *,
    seconds: float | None,
) -> None:
    """``twin web --processes N`` (N > 1): the server processes until stopped; exit 2 for a
    bad address or a port in use, 1 if they cannot start or all of them end."""
    from viz.web.processes import PortInUse, ServeError, ServerProcesses, ServerSpec

    try:
        check_port_free(options.host, options.port)
        fanout, snap = fanout_endpoints(connect, snapshot)
    except BadAddress as exc:
        err.print(f"twin web: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    load_or_exit(scene)  # its problems here, once, before the processes load it
    stop = stop_on_signals()
    spec = ServerSpec(scene, fanout, snap, options, log_level=logging.getLogger().level)
    with ServerProcesses(count, spec) as servers:
        try:
            url = servers.start(stop)
            if not stop.is_set():
                err.print(
                    f"twin web: {url} (read-only; kiosk: {url}?kiosk; {count} processes)",
                    markup=False,
                )
                if seconds is not None:
                    timer = threading.Timer(seconds, stop.set)
                    timer.daemon = True
                    timer.start()
                servers.supervise(stop)
        except PortInUse as exc:
            err.print(f"twin web: {exc}", markup=False)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except ServeError as exc:
            err.print(f"twin web: {exc}", markup=False)
            raise typer.Exit(EXIT_FAILED) from None
        served = [f.served for f in servers.figures.all()]
    err.print(
        f"twin web: stopped; pages served by each process: {', '.join(map(str, served))}",
        markup=False,
    )


def _replay_viewer(path: Path, options: WebOptions) -> WebViewer:
    """The viewer of a recording (``twin replay``'s source); BadAddress (one line) for a file
    that is not a readable recording."""
    from twin.cli.replay import ReplayInputError, load_source
    from viz.web.replay import ReplayClock
    from viz.web.server import WebViewer

    try:
        source = load_source(path)
    except ReplayInputError as exc:
        raise BadAddress(str(exc)) from None
    clock = ReplayClock(source, name=path.name, warning=source.recording.damage.line())
    clock.start(playing=options.kiosk, loop=options.kiosk)
    return start_viewer(
        lambda: WebViewer(source.scene, clock, options=options, extras=clock),
        options.host,
        options.port,
    )


def _warning(viewer: WebViewer) -> str:
    """A served recording's damage, in one line ("" when whole, or when live)."""
    from viz.web.replay import ReplayClock

    if isinstance(viewer.source, ReplayClock):
        return viewer.source.replay.recording.damage.line()
    return ""


def register(app: typer.Typer) -> None:
    """Add ``twin web``."""
    app.command("web")(web_cmd)
