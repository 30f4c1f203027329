"""``twin web --processes N``: N server processes at one port, each its own reader of the
twin's fan-out (:mod:`viz.web.processes`). Pages spread over the processes and each gets the
whole scene, then poses; a process that dies leaves the others serving and is started again;
the parent's end (SIGTERM, SIGINT, or killed) leaves no server process behind; a bad count is
one line and exit 2.

The twin is :class:`tests.helpers.ThreadedMirror` (the ``mirror`` fixture) fed by a gateway
thread with new joint positions for one robot every 20 ms, so every frame moves something.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import zstandard
from websockets.exceptions import InvalidMessage
from websockets.sync.connection import Connection

from scenes import load_scene
from tests.helpers import STARTUP_S, Proc, ThreadedMirror, wait_for
from tests.viz.web_pages import page_socket, window_messages
from viz.web.processes import ServerProcesses, ServerSpec, State
from viz.web.server import WebOptions

log = logging.getLogger(__name__)

MAX_PAGES = 40
"""Pages opened, at most, until each of two processes has one (the kernel picks by a hash:
40 pages all on one of two processes is a 1 in 2**39 chance)."""
PAGE_S = 30.0
"""A page's whole scene and its first pose updates, on a loaded 2-core machine."""


@pytest.fixture
def servers(moving: ThreadedMirror) -> Iterator[ServerProcesses]:
    """Two server processes of the moving mirror on a free port, each reading the twin; a
    process that ends is started again at once."""
    spec = ServerSpec(None, moving.endpoints.fanout, moving.endpoints.snapshot, WebOptions(port=0))
    with ServerProcesses(2, spec, restart_after_s=0.0) as started:
        started.start()
        wait_for(
            lambda: all(f.linked for f in started.figures.all()),
            timeout_s=STARTUP_S,
            what="each process reading the twin",
        )
        yield started


@dataclass
class Seen:
    """What a page received: the nodes of viser's replay of the scene (up to its
    ``ReplayDoneMessage``), then how many windows carried robot poses."""

    scene: set[str] = field(default_factory=set)
    pose_updates: int = 0


def read_page(socket: Connection, *, poses: int = 3, timeout_s: float = PAGE_S) -> Seen:
    """Read a page's messages, as viser's page decodes them, until the scene's replay is
    over and ``poses`` windows with robot poses came after it."""
    decompressor = zstandard.ZstdDecompressor()
    seen = Seen()
    replayed = False
    deadline = time.monotonic() + timeout_s
    while not (replayed and seen.pose_updates >= poses):
        left = deadline - time.monotonic()
        if left <= 0.0:
            pytest.fail(f"replayed: {replayed}, {seen.pose_updates} pose updates in {timeout_s} s")
        raw = socket.recv(timeout=left)
        assert isinstance(raw, bytes)
        messages = window_messages(raw, decompressor)
        posed = False
        for message in messages:
            name = message.get("name")
            if not replayed:
                replayed = message["type"] == "ReplayDoneMessage"
                if isinstance(name, str):
                    seen.scene.add(name)
            elif message["type"] == "SceneNodeUpdateMessage" and str(name).startswith("/robots/"):
                posed = True
        seen.pose_updates += posed
    return seen


def test_pages_spread_over_the_processes_and_each_gets_the_scene_then_poses(
    servers: ServerProcesses,
) -> None:
    with ExitStack() as pages:
        sockets: list[Connection] = []
        while not all(f.pages for f in servers.figures.all()):
            assert len(sockets) < MAX_PAGES, "every page went to one process"
            sockets.append(pages.enter_context(page_socket(servers.url)))
            wait_for(
                lambda: sum(f.pages for f in servers.figures.all()) == len(sockets),
                timeout_s=PAGE_S,
                what=f"{len(sockets)} pages counted",
            )
        sockets.append(pages.enter_context(page_socket(servers.url)))  # one more, anywhere
        seen = [read_page(socket) for socket in sockets]
        figures = servers.figures.all()
        assert sorted(f.pid for f in figures) == sorted(servers.pids)
        assert len(set(servers.pids)) == 2 and os.getpid() not in servers.pids
        assert all(f.pages >= 1 for f in figures), figures
        assert sum(f.pages for f in figures) == len(sockets)
    scene = load_scene()
    first = seen[0].scene
    assert any(name.startswith("/robots/") for name in first)
    for robot in scene.robots:
        assert any(robot.id in name for name in first), f"{robot.id} not in the scene"
    assert all(page.scene == first for page in seen), "a page got another scene"
    assert all(page.pose_updates >= 3 for page in seen)


def test_a_process_that_dies_leaves_the_other_serving_and_is_started_again(
    servers: ServerProcesses,
) -> None:
    dead, alive = servers.figures.all()
    os.kill(dead.pid, signal.SIGKILL)
    # once its socket is closed (a connection queued on it as it dies is reset: a browser
    # tries again), the kernel gives every new page to the one that listens
    wait_for(lambda: _gone(dead.pid), timeout_s=10.0, what="the killed process gone")
    assert _page_as_a_browser_opens_it(servers.url).pose_updates >= 3
    wait_for(lambda: servers.check() == 2, timeout_s=PAGE_S, what="the process started again")
    wait_for(
        lambda: (f := servers.figures.get(0)).state is State.SERVING and f.linked,
        timeout_s=STARTUP_S,
        what="the new process serving",
    )
    again = servers.figures.all()
    assert again[0].pid not in (dead.pid, 0) and again[1].pid == alive.pid
    assert _page_as_a_browser_opens_it(servers.url).pose_updates >= 3


def _page_as_a_browser_opens_it(url: str, tries: int = 3) -> Seen:
    """A page's figures, its WebSocket opened as a browser's page opens it across a hand-over:
    a handshake cut while the process it landed on died, or while the parent starts the new one
    (seen once in the suite runs of stops 28 and 29), is tried again, at most ``tries`` times."""
    for attempt in range(1, tries + 1):
        try:
            with page_socket(url) as page:
                return read_page(page)
        except (InvalidMessage, ConnectionError) as exc:
            if attempt == tries:
                raise
            log.info("page handshake cut (%s); trying again", exc)
    raise AssertionError("unreachable")


def _children(pid: int) -> set[int]:
    """``pid``'s child processes (Linux)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(c) for c in (task / "children").read_text().split())
    return found


def _gone(pid: int) -> bool:
    """No such process any more, or only its exit status left (a zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


@pytest.mark.parametrize(
    "how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda how: how.name
)
def test_the_parents_end_leaves_no_server_process(
    mirror: ThreadedMirror, how: signal.Signals
) -> None:
    web = Proc(
        "web", "--processes", "2", "--port", "0", "--priority", "normal",
        "--connect", mirror.endpoints.fanout, "--snapshot", mirror.endpoints.snapshot,
    )  # fmt: skip
    try:
        web.wait_line(r"twin web: http://127\.0\.0\.1:\d+/ .*2 processes", STARTUP_S)
        servers = wait_for(
            lambda: len(kids := _children(web.popen.pid)) >= 2 and kids,
            timeout_s=STARTUP_S,
            what="the server processes",
        )
        web.popen.send_signal(how)
        code = web.popen.wait(timeout=STARTUP_S)
        wait_for(
            lambda: all(_gone(pid) for pid in servers),
            timeout_s=10.0,
            what=f"no server process left after {how.name}",
        )
    finally:
        web.stop()
    if how is signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        assert code == 0, "".join(web.stderr)
        assert web.stderr[-1].startswith("twin web: stopped; pages served by each process: ")


@pytest.mark.parametrize("count", ["0", "-1"])
def test_a_bad_processes_count_is_one_line_and_exit_2(count: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "twin", "web", "--processes", count],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [f"twin web: --processes must be 1 or more, not {count}"]
