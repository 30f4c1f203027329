"""What a page may send to ``twin web``: view changes only, checked with hand-made WebSocket
messages rather than the page's own controls.

viser 1.1 answers a ``ShareUrlRequest`` from any connected page by opening a public tunnel to
``share.viser.studio``, whatever ``--host`` says; the page hides the share button, but a
WebSocket client (here, one that speaks viser's wire format like the page does: msgpack out,
zstd-framed msgpack in) can send it anyway. The viewer unregisters that handler and every
other one a page does not need (:func:`viz.web.server.keep_only_view_changes`).
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import msgspec
import numpy as np
import pytest
import viser
import viser._viser
import zstandard
from websockets.sync.connection import Connection

from scenes import load_scene
from tests.helpers import STARTUP_S, wait_for
from tests.viz.web_pages import page_socket, window_messages
from viz.sources import StaticSource
from viz.web.robots import pose_message
from viz.web.server import PAGE_MESSAGES, WebOptions, WebViewer

SERVER_HANDLERS = {"GuiUpdateMessage", "ScenePointerMessage"}
"""What viser's server still answers: a page's controls, a click in the scene (the camera is
answered per connection)."""


class RecordedTunnel:
    """Stands in for viser's ``ViserTunnel``: records that one was made and connects nowhere."""

    made: ClassVar[list[tuple[str, int]]] = []

    def __init__(self, share_domain: str, local_port: int) -> None:
        RecordedTunnel.made.append((share_domain, local_port))

    def get_status(self) -> str:
        return "failed"

    def get_url(self) -> str | None:
        return None

    def on_connect(self, callback: Callable[..., None]) -> Callable[..., None]:
        return callback

    def on_disconnect(self, callback: Callable[..., None]) -> Callable[..., None]:
        return callback

    def close(self) -> None:
        pass


@pytest.fixture
def viewer(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebViewer]:
    """``twin web`` of the scene at rest, in this process, on a free port, its loop running;
    viser's share tunnel replaced by :class:`RecordedTunnel`."""
    RecordedTunnel.made = []
    monkeypatch.setattr(viser._viser, "ViserTunnel", RecordedTunnel)
    scene = load_scene()
    web = WebViewer(scene, StaticSource(scene), options=WebOptions(port=0))
    stop = threading.Event()
    loop = threading.Thread(target=web.run, args=(stop,), daemon=True)
    loop.start()
    try:
        yield web
    finally:
        stop.set()
        loop.join(timeout=10.0)
        web.close()


def send(socket: Connection, message_type: str, **fields: Any) -> None:
    """One client message as the page sends it: a msgpack map with its ``type``."""
    socket.send(msgspec.msgpack.encode({"type": message_type, **fields}))


def camera(position: tuple[float, float, float]) -> dict[str, Any]:
    """A ``ViewerCameraMessage``'s fields: the page's camera at ``position``."""
    return {
        "wxyz": (1.0, 0.0, 0.0, 0.0),
        "position": position,
        "fov": 1.0,
        "near": 0.01,
        "far": 1000.0,
        "image_height": 720,
        "image_width": 1280,
        "look_at": (0.0, 0.0, 0.0),
        "up_direction": (0.0, 0.0, 1.0),
    }


def received_types(socket: Connection, *, until: str, timeout_s: float) -> set[str]:
    """Read server messages until one of type ``until`` arrives; the types seen."""
    decompressor = zstandard.ZstdDecompressor()
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while until not in seen:
        left = deadline - time.monotonic()
        if left <= 0.0:
            pytest.fail(f"no {until} within {timeout_s} s (saw {sorted(seen)})")
        raw = socket.recv(timeout=left)
        assert isinstance(raw, bytes)
        seen.update(m["type"] for m in window_messages(raw, decompressor))
    return seen


def camera_at(web: WebViewer, client_id: int, position: tuple[float, float, float]) -> bool:
    """True once the server has taken in a page's camera at ``position``."""
    page = web.pages.get(client_id)
    return page is not None and bool(np.allclose(page.client.camera.position, position))


def test_a_page_can_send_nothing_but_view_changes(viewer: WebViewer) -> None:
    handlers = viewer.server._websock_server._incoming_handlers
    assert {cls.__name__ for cls in handlers} == SERVER_HANDLERS
    with page_socket(viewer.url) as socket:
        send(socket, "ViewerCameraMessage", **camera((1.0, 2.0, 3.0)))
        received_types(socket, until="ReplayDoneMessage", timeout_s=STARTUP_S)
        client_id = wait_for(lambda: list(viewer.pages), timeout_s=STARTUP_S, what="the page")[0]
        wait_for(lambda: camera_at(viewer, client_id, (1.0, 2.0, 3.0)), timeout_s=STARTUP_S)
        connection = viewer.pages[client_id].client._websock_connection
        assert {cls.__name__ for cls in connection._incoming_handlers} == PAGE_MESSAGES

        for message_type, fields in (
            ("ShareUrlRequest", {}),
            ("ShareUrlDisconnect", {}),
            ("ShareUrlRequest", {}),
            ("CommandTriggerMessage", {"uuid": "no-such-command"}),
        ):
            send(socket, message_type, **fields)
        # A connection's messages are taken in order: once this camera is in, the server has
        # handled (or dropped) everything above it.
        send(socket, "ViewerCameraMessage", **camera((4.0, 5.0, 6.0)))
        wait_for(lambda: camera_at(viewer, client_id, (4.0, 5.0, 6.0)), timeout_s=STARTUP_S)

        # The server goes on serving: this page, a new page, plain HTTP.
        with page_socket(viewer.url) as late:
            send(late, "ViewerCameraMessage", **camera((7.0, 8.0, 9.0)))
            assert "ReplayDoneMessage" in received_types(
                late, until="ReplayDoneMessage", timeout_s=STARTUP_S
            )
            wait_for(lambda: len(viewer.pages) == 2, timeout_s=STARTUP_S, what="a second page")
        with urllib.request.urlopen(viewer.url, timeout=STARTUP_S) as response:
            assert response.status == 200
        assert viewer.failed_frames == 0

    # Once both pages are gone, let the thread pool run whatever the handlers above
    # submitted, then look.
    wait_for(lambda: not viewer.pages, timeout_s=STARTUP_S, what="the pages gone")
    viewer.server._thread_executor.shutdown(wait=True)
    assert RecordedTunnel.made == []
    assert viewer.server._share_tunnel is None


def test_the_pose_message_serialises_as_viser_does() -> None:
    """:func:`viz.web.robots.pose_message`'s own serialiser gives what viser's generic one gives
    (the same dict, buffer indices after those already in the window, the same bytes), with
    the owner stamp the scope puts on when it queues the message."""
    from viser import _messages
    from viser.infra._messages import Message

    rng = np.random.default_rng(3)
    positions = rng.normal(size=(5, 3)).astype(np.float32)
    wxyzs = rng.normal(size=(5, 4)).astype(np.float32)
    message = pose_message("/robots/m/link1_0", positions, wxyzs)
    message.owner = "scope-7"
    assert isinstance(message, _messages.SceneNodeUpdateMessage)
    fast_buffers: list[memoryview] = [memoryview(b"already in the window")]
    generic_buffers: list[memoryview] = [memoryview(b"already in the window")]
    fast = message.as_serializable_dict(fast_buffers)
    generic = Message.as_serializable_dict(message, generic_buffers)
    assert fast == generic
    assert [bytes(b) for b in fast_buffers] == [bytes(b) for b in generic_buffers]
    assert msgspec.msgpack.encode(fast) == msgspec.msgpack.encode(generic)
    assert message.as_serializable_dict(None) == Message.as_serializable_dict(message, None)
    assert (
        message.redundancy_key()
        == _messages.SceneNodeUpdateMessage(
            "/robots/m/link1_0", {"batched_positions": positions, "batched_wxyzs": wxyzs}
        ).redundancy_key()
    )
