"""Simulated browsers for ``benchmarks/web.py``: WebSocket clients of a viser page that read
like a browser does.

Usage (``benchmarks/web.py`` starts it; one process holds several clients on one asyncio
loop)::

    python -m benchmarks.web_clients URL --clients K --window-start T0 --window-end T1
                                     [--late-at T]

Each client opens the page's WebSocket with viser's subprotocol (``viser-vVERSION``, what the
page's JavaScript offers), then reads every message as soon as it arrives, as viser's
client does: it splits the header, decompresses the zstd part and decodes the msgpack
(the binary buffers after it are only sized: the browser makes typed-array views of them
without copying). It sends nothing. ``T0``/``T1`` are ``time.monotonic()`` instants (the
clock is system-wide on Linux, so the parent's instants hold here); only messages that
arrive within the window count for the rates.

Per client, on stdout as one JSON object when the window is over:

- ``first_frame_s``: from opening the connection to the end of viser's replay of the scene
  (its ``ReplayDoneMessage``, sent to each new client after every node the server holds):
  from then on the client holds a complete frame of the hall and receives live updates.
  ``first_frame_bytes``: what it received until then (the scene: geometry once, and state).
- ``pose_updates``: messages (viser's batched windows) within the window that carried at
  least one update of the robots' instance poses (a node under ``/robots/``); the update
  rate a page sees is this over the window's length.
- ``bytes``: WebSocket payload bytes received within the window.
- ``late``: with ``--late-at T``, one more client connects at ``T`` (while the others are
  served) and is counted apart: its ``first_frame_s`` is a new visitor's wait in a crowd.

``cpu_s`` is this process's CPU time (user + system) over its whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import msgspec
import viser
import websockets
import zstandard

log = logging.getLogger(__name__)

ROBOT_NODES = "/robots/"


@dataclass
class ClientFigures:
    """What one simulated page received."""

    first_frame_s: float | None = None
    first_frame_bytes: int = 0
    pose_updates: int = 0
    messages: int = 0
    bytes: int = 0
    error: str = ""


def carries_robot_poses(messages: Sequence[dict[str, Any]]) -> bool:
    """True if a window of viser messages updates a robot node's instance poses."""
    for message in messages:
        if message.get("type") == "SceneNodeUpdateMessage":
            name = message.get("name", "")
            if isinstance(name, str) and name.startswith(ROBOT_NODES):
                return True
    return False


def decode_window(
    raw: bytes, decompressor: zstandard.ZstdDecompressor
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """One of viser's windows as its page decodes it: a header of two lengths, the
    zstd-compressed msgpack, then the binary buffers, each at an 8-byte boundary, whose
    lengths the msgpack lists (arrays in the messages are placeholders that index them)."""
    inner_len = int.from_bytes(raw[0:8], "little")
    packed_len = int.from_bytes(raw[8:16], "little")
    inner = msgspec.msgpack.decode(decompressor.decompress(raw[16 : 16 + packed_len], inner_len))
    buffers = []
    offset = 16 + packed_len
    for length in inner.get("binaryBufferLengths", ()):
        offset += -offset % 8
        buffers.append(raw[offset : offset + length])
        offset += length
    messages: list[dict[str, Any]] = inner["messages"]
    return messages, buffers


def count_window(
    figures: ClientFigures, raw: bytes, now: float, opened: float,
    window: tuple[float, float], decompressor: zstandard.ZstdDecompressor,
) -> None:  # fmt: skip
    """Count in ``figures`` one of viser's windows received at ``now`` by a page opened at
    ``opened``, decoded as the page's JavaScript decodes it."""
    if figures.first_frame_s is None:
        figures.first_frame_bytes += len(raw)
    messages = decode_window(raw, decompressor)[0]
    if figures.first_frame_s is None and any(
        m.get("type") == "ReplayDoneMessage" for m in messages
    ):
        figures.first_frame_s = now - opened
    if window[0] <= now <= window[1]:
        figures.messages += 1
        figures.bytes += len(raw)
        if carries_robot_poses(messages):
            figures.pose_updates += 1


async def read_page(url: str, window: tuple[float, float], figures: ClientFigures) -> None:
    """One client: connect, read and decode everything until the window ends."""
    end = window[1]
    decompressor = zstandard.ZstdDecompressor()
    opened = time.monotonic()
    try:
        async with websockets.connect(
            url.replace("http://", "ws://"),
            subprotocols=[websockets.Subprotocol(f"viser-v{viser.__version__}")],
            max_size=None,
            compression=None,
            open_timeout=30.0,
        ) as socket:
            while True:
                left = end - time.monotonic()
                if left <= 0.0:
                    return
                try:
                    raw = await asyncio.wait_for(socket.recv(), timeout=left)
                except TimeoutError:
                    return
                assert isinstance(raw, bytes)
                count_window(figures, raw, time.monotonic(), opened, window, decompressor)
    except (OSError, websockets.exceptions.WebSocketException) as exc:
        figures.error = f"{type(exc).__name__}: {exc}"


async def run_clients(
    url: str, clients: int, window: tuple[float, float], late_at: float | None
) -> tuple[list[ClientFigures], ClientFigures | None]:
    """``clients`` pages at once, and the late one if asked."""
    figures = [ClientFigures() for _ in range(clients)]
    tasks = [asyncio.create_task(read_page(url, window, f)) for f in figures]
    late = None
    if late_at is not None:
        late = ClientFigures()
        await asyncio.sleep(max(0.0, late_at - time.monotonic()))
        tasks.append(asyncio.create_task(read_page(url, window, late)))
    await asyncio.gather(*tasks)
    return figures, late


def main(argv: Sequence[str] | None = None) -> int:
    """Run the clients; print their figures as one JSON object."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--window-start", type=float, required=True)
    parser.add_argument("--window-end", type=float, required=True)
    parser.add_argument("--late-at", type=float, default=None)
    args = parser.parse_args(argv)
    window = (args.window_start, args.window_end)
    cpu0 = time.process_time()
    figures, late = asyncio.run(run_clients(args.url, args.clients, window, args.late_at))
    out = {
        "clients": [asdict(f) for f in figures],
        "late": asdict(late) if late is not None else None,
        "cpu_s": time.process_time() - cpu0,
    }
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
