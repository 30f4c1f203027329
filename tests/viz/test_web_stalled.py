"""A stalled page never slows the others or the twin, and never makes the server queue.

A page whose browser stops reading (a frozen tab, a phone that lost its radio) is a real
WebSocket that completed viser's handshake and then reads nothing: its TCP window fills and
the server can no longer send to it. The viewer (in this process, its loop in a thread) serves
the ``moving`` mirror (a robot's joints new every 20 ms) to that page and to a page that reads
like a browser. While the one is stalled, the other keeps receiving robot poses, the viewer's
loop keeps making frames, the twin keeps ingesting, and this process's memory does not grow
without bound.

Measured here (8 s stall): the reading page got 29.5 pose updates a second, the stalled
socket's kernel send queue held 2.76 MB (the server could send it no more), and this process
grew 0.25 MB. The memory bound is a coarse guard: updates at this rate are a few MB over the
stall, within an allocator's noise, so what the test holds sharply is the rates.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import viser
import zstandard

from scenes import load_scene
from tests.helpers import STARTUP_S, ThreadedMirror, wait_for
from tests.viz.web_pages import page_socket, serving, window_messages
from viz.web.live import LiveLink

STALL_S = 8.0
"""How long the stalled page reads nothing while the other is measured."""
MIN_POSE_HZ = 3.0
"""The reading page's robot-pose updates per second while the other is stalled, at least (the
viewer sends up to 30 a second; this machine has 2 cores and runs the twin and the viewer)."""
MAX_GROWTH_B = 64 * 1024 * 1024
"""This process's resident memory may grow this much over the stall, at most (a coarse guard
against a server that queues without bound for a page that does not read)."""


@dataclass
class Reader:
    """A page that reads every message as viser's page does, counting robot-pose windows."""

    pose_updates: int = 0
    replayed: bool = False
    error: str = ""


def _read(url: str, reader: Reader, stop: threading.Event) -> None:
    decompressor = zstandard.ZstdDecompressor()
    try:
        with page_socket(url) as page:
            while not stop.is_set():
                try:
                    raw = page.recv(timeout=0.5)
                except TimeoutError:
                    continue
                assert isinstance(raw, bytes)
                for message in window_messages(raw, decompressor):
                    if message["type"] == "ReplayDoneMessage":
                        reader.replayed = True
                    elif (
                        reader.replayed
                        and message["type"] == "SceneNodeUpdateMessage"
                        and str(message.get("name")).startswith("/robots/")
                    ):
                        reader.pose_updates += 1
                        break
    except Exception as exc:  # the test asserts there was none
        reader.error = f"{type(exc).__name__}: {exc}"


@contextmanager
def reading_page(url: str) -> Iterator[Reader]:
    reader, stop = Reader(), threading.Event()
    thread = threading.Thread(target=_read, args=(url, reader, stop), daemon=True)
    thread.start()
    try:
        yield reader
    finally:
        stop.set()
        thread.join(timeout=10.0)


@contextmanager
def stalled_page(port: int) -> Iterator[socket.socket]:
    """A WebSocket opened as viser's page opens it (the HTTP upgrade, its subprotocol), with
    a small receive buffer, that then reads nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    try:
        sock.settimeout(STARTUP_S)
        sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: viser-v{viser.__version__}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:  # the response's head only, a byte at a time
            byte = sock.recv(1)
            assert byte, f"the server closed the upgrade: {head!r}"
            head += byte
        assert head.startswith(b"HTTP/1.1 101"), head
        yield sock
    finally:
        sock.close()


def resident_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def test_a_stalled_page_slows_nothing_and_is_not_queued_for(moving: ThreadedMirror) -> None:
    link = LiveLink(moving.endpoints.fanout, moving.endpoints.snapshot)
    with serving(load_scene(), link) as viewer:
        wait_for(lambda: link.source is not None, timeout_s=STARTUP_S, what="the viewer linked")
        port = viewer.server.get_port()
        url = f"http://127.0.0.1:{port}"
        with stalled_page(port), reading_page(url) as reader:
            wait_for(
                lambda: reader.pose_updates >= 3 or bool(reader.error),
                timeout_s=STARTUP_S,
                what="the reading page's scene and first poses",
            )
            # the stalled page's buffers fill within the first second: measure after it
            wait_for(lambda: reader.pose_updates >= 10, timeout_s=STARTUP_S, what="10 poses")
            poses, frames = reader.pose_updates, viewer.frames
            ingested = moving.ingest.accepted
            memory = resident_bytes()
            started = time.monotonic()
            time.sleep(STALL_S)  # the measured span itself, not a wait for a condition
            span_s = time.monotonic() - started
            pose_hz = (reader.pose_updates - poses) / span_s
            frames_made = viewer.frames - frames
            growth = resident_bytes() - memory
            ingested = moving.ingest.accepted - ingested
        assert not reader.error, reader.error
        assert pose_hz >= MIN_POSE_HZ, f"{pose_hz:.1f} pose updates/s beside a stalled page"
        assert frames_made >= MIN_POSE_HZ * span_s, frames_made
        assert ingested >= 0.5 * span_s / 0.02, f"the twin ingested {ingested} in {span_s:.1f} s"
        assert growth <= MAX_GROWTH_B, f"memory grew {growth / 1e6:.1f} MB over the stall"
