"""``twin web --processes N``: N web server processes at one address, each its own reader of
the twin's fan-out.

One process serves its pages with one core at most, and each page costs it more (viser
serialises, compresses and sends every page's copy of every message): with 50 pages that
core is full. :class:`ServerProcesses` starts N server processes (spawned: none of the
parent's threads or sockets in them), each a whole :class:`viz.web.server.WebViewer` over its
own :class:`viz.web.live.LiveLink` (the fan-out's snapshot, then its updates, read-only, as
one process alone), all listening on the same address and port with ``SO_REUSEPORT``: Linux
gives each new connection to one of the listening sockets, by a hash of its addresses and
ports, so the pages spread over the processes at the one URL, with no front page and no
redirect. Every process holds the whole scene: a page gets the same (the scene when it
connects, then poses) whichever it lands on. A page whose process ended reconnects by
itself (viser's page does) and lands on one that serves.

viser 1.1 binds its own socket (``websockets.asyncio.server.serve(handler, host, port)``)
and takes neither a socket nor ``reuse_port``: :func:`reusing_port` adds ``reuse_port=True``
to that call while a viewer starts, in a server process only. The parent holds the port for
the whole run with a bound socket that does not listen (it gets no connections): port 0
names one free port for all, and nothing else takes the port between starts.

The parent supervises: a process that ends is logged and started again, unless it ended
within :data:`RESTART_AFTER_S` of its start (then the others go on without it). It stops them
all (SIGTERM, then SIGKILL) when it stops; each asks Linux to SIGTERM it when the parent dies
(``PR_SET_PDEATHSIG``) and ignores SIGINT (a Ctrl-C reaches the whole process group: the
parent stops them). Each process's figures are in shared memory (:class:`ServerFigures`).
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import errno
import functools
import io
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

from viz.web.server import WebOptions

log = logging.getLogger(__name__)

STARTUP_S: Final = 120.0
"""The longest a server process may take to listen (N worlds built at once on 2 cores)."""
RESTART_AFTER_S: Final = 10.0
"""A process that ends sooner than this after its start is not started again (by default)."""
STOP_S: Final = 5.0
"""How long a process has to stop after SIGTERM before it is killed."""
_REPORT_S: Final = 0.05
_PR_SET_PDEATHSIG: Final = 1
_LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ServeError(RuntimeError):
    """The server processes could not start (or all of them ended)."""


class PortInUse(ServeError):
    """The address cannot be listened on."""


class State(enum.IntEnum):
    """Where a server process is."""

    STARTING = 0
    SERVING = 1
    PORT_IN_USE = 2
    STOPPED = 3


_FIELDS: Final = ("pid", "state", "pages", "served", "frames", "cpu_s", "loop_cpu_s", "linked")


@dataclass(frozen=True)
class ProcessFigures:
    """One server process as it last reported itself."""

    pid: int
    state: State
    pages: int
    """Pages connected now."""
    served: int
    """Pages connected since it started."""
    frames: int
    cpu_s: float
    """The process's CPU time (every thread)."""
    loop_cpu_s: float
    """The viewer's frame loop's CPU time."""
    linked: bool
    """It reads the twin's fan-out."""


class ServerFigures:
    """Each server process's :class:`ProcessFigures`, in memory they all share (doubles, one
    writer per field: a reader sees each value whole, the set of them within
    :data:`_REPORT_S`)."""

    def __init__(self, count: int, array: Any = None) -> None:
        """New shared memory for ``count`` processes, or (in a server process) ``array``,
        the memory its parent made."""
        self.count = count
        self.array: Any = (
            multiprocessing.get_context("spawn").RawArray("d", count * len(_FIELDS))
            if array is None
            else array
        )

    def set(self, slot: int, **values: float) -> None:
        for name, value in values.items():
            self.array[slot * len(_FIELDS) + _FIELDS.index(name)] = float(value)

    def get(self, slot: int) -> ProcessFigures:
        row = self.array[slot * len(_FIELDS) : (slot + 1) * len(_FIELDS)]
        v = dict(zip(_FIELDS, row, strict=True))
        return ProcessFigures(
            pid=int(v["pid"]),
            state=State(int(v["state"])),
            pages=int(v["pages"]),
            served=int(v["served"]),
            frames=int(v["frames"]),
            cpu_s=v["cpu_s"],
            loop_cpu_s=v["loop_cpu_s"],
            linked=bool(v["linked"]),
        )

    def all(self) -> list[ProcessFigures]:
        return [self.get(slot) for slot in range(self.count)]


@dataclass(frozen=True)
class ServerSpec:
    """What each server process serves (picklable: it is sent to each)."""

    scene: Path | None
    fanout: str
    snapshot: str
    options: WebOptions
    log_level: int = logging.WARNING
    parent_pid: int = 0


@contextlib.contextmanager
def reusing_port() -> Iterator[None]:
    """While the block runs, websockets' ``serve`` (which viser 1.1 calls to listen) binds
    with ``SO_REUSEPORT``. For a viewer's constructor, which returns once viser listens."""
    import websockets.asyncio.server as ws_server

    original = ws_server.serve
    ws_server.serve = functools.partial(original, reuse_port=True)  # type: ignore[assignment,misc]
    try:
        yield
    finally:
        ws_server.serve = original  # type: ignore[misc]


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with ``SO_REUSEPORT`` that does not listen: it holds
    the port (0: a free one) for the server processes, which bind it too, and gets no
    connections. :class:`PortInUse` where something else listens there."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
    except OSError as exc:
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    held = socket.socket(family, kind, proto)
    try:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(address)
    except OSError as exc:
        held.close()
        why = "port in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise PortInUse(f"cannot listen on {host}:{port}: {why}") from None
    return held


class ServerProcesses:
    """``count`` server processes of ``spec`` on one port: :meth:`start`, then
    :meth:`supervise` until stopped, then :meth:`close` (or use it as a context manager). A
    process that ends is started again unless it lasted less than ``restart_after_s``. Call
    it from a thread that outlives the processes (Linux sends the death signal when the
    thread that started a process ends)."""

    def __init__(
        self, count: int, spec: ServerSpec, *, restart_after_s: float = RESTART_AFTER_S
    ) -> None:
        if count < 1:
            raise ValueError("at least one server process")
        self.count = count
        self.spec = spec
        self.figures = ServerFigures(count)
        self.url = ""
        self._context = multiprocessing.get_context("spawn")
        self._procs: list[BaseProcess | None] = [None] * count
        self._started_s = [0.0] * count
        self._held: socket.socket | None = None
        self._stopping = False
        self._restart_after_s = restart_after_s

    def __enter__(self) -> ServerProcesses:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p is not None and p.pid is not None]

    def start(self, stop: threading.Event | None = None) -> str:
        """Hold the port, start every process, wait until each listens; the URL. Raises
        :class:`PortInUse` or :class:`ServeError` (the processes already started are
        stopped); returns early, not serving, if ``stop`` is set meanwhile."""
        options = self.spec.options
        self._held = reserve_port(options.host, options.port)
        port = self._held.getsockname()[1]
        self.spec = replace(self.spec, options=replace(options, port=port), parent_pid=os.getpid())
        self.url = f"http://{options.host}:{port}/"
        for slot in range(self.count):
            self._start(slot)
        deadline = time.monotonic() + STARTUP_S
        waiting = set(range(self.count))
        while waiting and not (stop is not None and stop.is_set()):
            for slot in sorted(waiting):
                state, proc = self.figures.get(slot).state, self._procs[slot]
                if state is State.SERVING:
                    waiting.discard(slot)
                elif state is State.PORT_IN_USE:
                    self.close()
                    raise PortInUse(f"cannot listen on {options.host}:{port}: port in use")
                elif proc is None or not proc.is_alive():
                    self.close()
                    code = None if proc is None else proc.exitcode
                    raise ServeError(f"web server process {slot} ended while starting ({code})")
            if time.monotonic() > deadline:
                self.close()
                raise ServeError(f"the web server processes did not start in {STARTUP_S:g} s")
            time.sleep(_REPORT_S)
        log.info("%d web server processes at %s: pids %s", self.count, self.url, self.pids)
        return self.url

    def _start(self, slot: int) -> None:
        self.figures.set(
            slot, state=State.STARTING, pid=0, pages=0, served=0, frames=0, cpu_s=0.0,
            loop_cpu_s=0.0, linked=0,
        )  # fmt: skip
        proc = self._context.Process(
            target=serve_one,
            args=(self.spec, self.figures.array, self.count, slot),
            name=f"twin-web-{slot}",
            daemon=True,
        )
        proc.start()
        self._procs[slot] = proc
        self._started_s[slot] = time.monotonic()

    def check(self) -> int:
        """Start again each process that ended (unless it ended soon after its start); the
        number of processes alive."""
        alive = 0
        for slot, proc in enumerate(self._procs):
            if proc is None:
                continue
            if proc.is_alive():
                alive += 1
                continue
            lasted_s = time.monotonic() - self._started_s[slot]
            proc.join(timeout=0)
            if self._stopping:
                continue
            if lasted_s < self._restart_after_s:
                log.warning(
                    "web server process %d (pid %s) ended after %.1f s (exit %s); not "
                    "started again, the others go on",
                    slot, proc.pid, lasted_s, proc.exitcode,
                )  # fmt: skip
                self._procs[slot] = None
                continue
            log.warning(
                "web server process %d (pid %s) ended (exit %s); starting it again",
                slot, proc.pid, proc.exitcode,
            )  # fmt: skip
            self._start(slot)
            alive += 1
        return alive

    def supervise(self, stop: threading.Event, poll_s: float = 0.2) -> None:
        """Keep the processes serving until ``stop``; :class:`ServeError` when none is left."""
        while not stop.wait(poll_s):
            if self.check() == 0:
                raise ServeError("every web server process ended")

    def close(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after :data:`STOP_S`); release the
        port."""
        self._stopping = True
        procs = [p for p in self._procs if p is not None]
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + STOP_S
        for proc in procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.warning("web server process pid %s did not stop; killing it", proc.pid)
                proc.kill()
                proc.join(timeout=STOP_S)
        if self._held is not None:
            self._held.close()
            self._held = None


def _die_with_parent(parent_pid: int) -> None:
    """SIGTERM this process when its parent dies (Linux); end now if it already has."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if parent_pid and os.getppid() != parent_pid:
        raise SystemExit(0)


def serve_one(spec: ServerSpec, array: Any, count: int, slot: int) -> None:
    """One server process (:class:`ServerProcesses` starts it): the viewer on the shared
    port, its figures in slot ``slot`` of the shared ``array``, until SIGTERM."""
    _die_with_parent(spec.parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    logging.basicConfig(level=spec.log_level, format=_LOG_FORMAT)
    figures = ServerFigures(count, array)
    figures.set(slot, pid=os.getpid())
    try:
        _serve(spec, figures, slot, stop)
    except Exception as exc:  # one line, not multiprocessing's traceback; the parent says more
        log.error("web server process %d (pid %d) failed: %s", slot, os.getpid(), exc)
        raise SystemExit(1) from None


def _serve(spec: ServerSpec, figures: ServerFigures, slot: int, stop: threading.Event) -> None:
    """The body of :func:`serve_one`."""
    from scenes import load_scene
    from viz.web.live import LiveLink
    from viz.web.server import WebViewer

    scene = load_scene(spec.scene)
    link = LiveLink(spec.fanout, spec.snapshot)
    with reusing_port():
        viewer = WebViewer(scene, link, options=spec.options, notice=lambda: link.notice)
    if viewer.server.get_port() != spec.options.port:  # viser took the next free one
        _close_quietly(viewer)
        figures.set(slot, state=State.PORT_IN_USE)
        raise SystemExit(2)

    # Each WebSocket is a page (viser counts a client in only once it has sent its camera);
    # both callbacks run on viser's event loop, the one writer of these two fields.
    pages, served = 0, 0

    def opened(_connection: object) -> None:
        nonlocal pages, served
        pages, served = pages + 1, served + 1
        figures.set(slot, pages=pages, served=served)

    def closed(_connection: object) -> None:
        nonlocal pages
        pages -= 1
        figures.set(slot, pages=pages)

    viewer.server._websock_server.on_client_connect(opened)
    viewer.server._websock_server.on_client_disconnect(closed)
    loop_clock = time.pthread_getcpuclockid(threading.get_ident())
    done = threading.Event()

    def report() -> None:
        while True:
            figures.set(
                slot,
                frames=viewer.frames,
                cpu_s=time.process_time(),
                loop_cpu_s=time.clock_gettime(loop_clock),
                linked=link.source is not None,
            )
            if done.wait(_REPORT_S):
                return

    reporter = threading.Thread(target=report, name="figures", daemon=True)
    figures.set(slot, state=State.SERVING)
    log.info("web server process %d (pid %d) serving", slot, os.getpid())
    reporter.start()
    try:
        viewer.run(stop)
    finally:
        done.set()
        reporter.join(timeout=1.0)
        _close_quietly(viewer)
        figures.set(slot, state=State.STOPPED)


def _close_quietly(viewer: Any) -> None:
    """Close a viewer without viser's "Server stopped" on stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        viewer.close()
