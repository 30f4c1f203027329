"""Helpers for the web viewer's tests: headless Chromium, an in-process viewer, sockets."""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import viser
import zstandard
from playwright.sync_api import Browser, Page
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from benchmarks.web_clients import decode_window
from scenes.model import Scene
from tests.helpers import STARTUP_S, wait_for
from viz.web.live import LiveLink
from viz.web.server import WebOptions, WebViewer

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package (scripts/system-deps.sh)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader"]
PAGE_LOAD_S = 60.0  # software WebGL on a loaded 2-core machine


@contextmanager
def serving(scene: Scene, link: LiveLink, *, kiosk: bool = False) -> Iterator[WebViewer]:
    """A web viewer of ``link`` on a free port, its loop in a thread."""
    viewer = WebViewer(
        scene, link, options=WebOptions(port=0, kiosk=kiosk), notice=lambda: link.notice
    )
    stop = threading.Event()
    loop = threading.Thread(target=viewer.run, args=(stop,), daemon=True)
    loop.start()
    try:
        yield viewer
    finally:
        stop.set()
        loop.join(timeout=10.0)
        viewer.close()


@contextmanager
def opened(
    browser: Browser, url: str, *, frames: Callable[[str | bytes], None] | None = None
) -> Iterator[Page]:
    """A 1280x720 page at ``url``, closed afterwards; ``frames`` is given every WebSocket
    frame the page receives (while a Playwright call runs: ``page.wait_for_timeout``)."""
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    if frames is not None:
        page.on("websocket", lambda socket: socket.on("framereceived", frames))
    try:
        page.goto(url)
        yield page
    finally:
        page.close()


def page_text(page: Page) -> str:
    """Everything the page's DOM shows as text."""
    text: str = page.evaluate("() => document.body.innerText")
    return text


def wait_text(
    page: Page, text: str, *, timeout_s: float = PAGE_LOAD_S, present: bool = True
) -> None:
    """Wait until ``text`` is (or is no longer) on the page."""
    wait_for(
        lambda: (text in page_text(page)) == present,
        timeout_s=timeout_s,
        interval_s=0.2,
        what=f"{text!r} {'on' if present else 'gone from'} the page",
    )


def the_page(viewer: WebViewer, *, timeout_s: float = PAGE_LOAD_S) -> int:
    """The client id of the one page connected to ``viewer``."""
    pages = wait_for(lambda: list(viewer.pages), timeout_s=timeout_s, what="a page connected")
    assert len(pages) == 1, pages
    client_id: int = pages[0]
    return client_id


def look_at(client: viser.ClientHandle, target: np.ndarray, offset: np.ndarray) -> None:
    """Point a page's camera at ``target`` from ``target + offset``, and wait until the
    browser has applied it (it reports its camera back after the change)."""
    before = client.camera.update_timestamp
    with client.atomic():
        client.camera.position = target + offset
        client.camera.look_at = target
    wait_for(
        lambda: (
            client.camera.update_timestamp > before
            and float(np.linalg.norm(np.asarray(client.camera.look_at) - target)) < 0.05
        ),
        timeout_s=PAGE_LOAD_S,
        interval_s=0.1,
        what="the browser's camera on the target",
    )


def coloured_share(png: bytes, box: tuple[int, int, int, int]) -> float:
    """The share of pixels in ``box`` (x0, y0, x1, y1) that are clearly coloured (not grey)."""
    import io

    import imageio.v3 as iio

    image = iio.imread(io.BytesIO(png))[box[1] : box[3], box[0] : box[2], :3].astype(int)
    spread = image.max(axis=2) - image.min(axis=2)
    return float(np.mean(spread > 60))


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def tcp_connections(pid: int) -> list[tuple[int, int, int]]:
    """(local port, remote port, state) of every IPv4/IPv6 TCP socket process ``pid`` holds."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[9] in inodes:
                local = int(fields[1].rsplit(":", 1)[1], 16)
                remote = int(fields[2].rsplit(":", 1)[1], 16)
                out.append((local, remote, int(fields[3], 16)))
    return out


def page_socket(url: str) -> ClientConnection:
    """A WebSocket to the page's server, opened as the page's JavaScript opens it."""
    return connect(
        url.replace("http://", "ws://"),
        subprotocols=[Subprotocol(f"viser-v{viser.__version__}")],
        max_size=None,
        max_queue=None,
        compression=None,
        open_timeout=STARTUP_S,
    )


def window_messages(raw: bytes, decompressor: zstandard.ZstdDecompressor) -> list[dict[str, Any]]:
    """The messages of one of viser's windows, decoded as its page decodes them (see
    :func:`decode_window`)."""
    return decode_window(raw, decompressor)[0]


class PageScene:
    """Every batched-meshes node's instance positions as the page holds them, read from the
    page's own WebSocket frames (Playwright's ``framereceived``): what reached the browser,
    not what the server meant to send."""

    def __init__(self) -> None:
        self.positions: dict[str, np.ndarray] = {}
        """Node name -> (instances, 3) positions, hall frame (m)."""
        self.updates: Counter[str] = Counter()
        """Node name -> the positions taken in for it (its first from the scene's replay)."""
        self._decompressor = zstandard.ZstdDecompressor()

    def frame(self, payload: str | bytes) -> None:
        """Take in one frame the page received."""
        if not isinstance(payload, bytes) or len(payload) < 16:
            return
        messages, buffers = decode_window(payload, self._decompressor)
        for message in messages:
            if message.get("type") == "BatchedMeshesMessage":
                value = message.get("props", {}).get("batched_positions")
            elif message.get("type") == "SceneNodeUpdateMessage":
                value = message.get("updates", {}).get("batched_positions")
            else:
                continue
            if isinstance(value, dict) and "__binary_index" in value:
                data = buffers[value["__binary_index"]]
                array = np.frombuffer(data, dtype=np.dtype(value["dtype"])).reshape(-1, 3)
            elif isinstance(value, bytes):
                array = np.frombuffer(value, dtype="<f4").reshape(-1, 3)
            else:
                continue
            self.positions[message["name"]] = array.astype(float)
            self.updates[message["name"]] += 1
