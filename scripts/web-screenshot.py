#!/usr/bin/env python3
"""Screenshot of the ``twin demo`` page in headless Chromium: docs/img/web-demo.png.

Usage::

    .venv/bin/python scripts/web-screenshot.py [--out docs/img/web-demo.png] [--width 1600]
                                               [--height 900] [--seconds 120]

Starts ``twin demo`` (the default hall, on a free port, its lessons in a temporary
database), reads the page's URL from its first line, waits until the twin reports every
robot LIVE, then opens the URL in Debian's ``chromium`` (headless, software WebGL: the flags
the tests use) driven by Playwright, waits until every robot's label on the page has said
LIVE for 1 s (read from the page's own WebSocket frames: the labels are drawn in WebGL),
closes the page's "Software WebGL rendering detected" notice (a fact about this headless
browser, not the hall), and saves the viewport as a PNG of at most 256 colours, taken again
if a label changed meanwhile. The demo is stopped with SIGINT (Ctrl-C) afterwards.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, TypeVar

import msgspec
import zmq
import zstandard
from PIL import Image
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from sync.fanout import RequestError, request_status

log = logging.getLogger("web-screenshot")

CHROMIUM: Final = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))  # as the wrapper runs
BACKGROUND: Final = Path(__file__).resolve().parent / "chromium-background"
"""CHROMIUM at the lowest priority, its session's group included: its software WebGL must not
take the CPU of the hall it photographs (robots would turn STALE in the picture)."""
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",
]
ROOT: Final = Path(__file__).resolve().parent.parent
LABELS: Final = "/labels/"  # the robots' label nodes (viz/web/overlays.py)
HELP_TEXT: Final = "Read-only view of the live hall"  # the page's controls are built
STEADY_S: Final = 1.0
SHOT_TIMEOUT_S: Final = 60.0
"""How long the labels must have said LIVE, unchanged, before the shot: the page typesets a
label's new text off the main thread, so on a busy machine the canvas lags its frames."""
T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], *, timeout_s: float, what: str) -> T:
    """Poll ``condition`` until it returns something truthy; raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout_s:g} s")
        time.sleep(0.2)


def all_live(context: zmq.Context[zmq.Socket[bytes]], snapshot: str) -> list[str] | None:
    """The robots' ids once the twin reports every one LIVE; None before."""
    try:
        status = request_status(context, snapshot, timeout_s=2.0)
    except RequestError:
        return None
    robots = status["robots"]
    if robots and all(r["liveness"] == "LIVE" for r in robots):
        return [str(r["robot"]) for r in robots]
    return None


class PageLabels:
    """The robots' label texts as the page holds them: read from the page's own WebSocket
    frames (viser's framing: a 16-byte header, zstd, msgpack), since the page draws its labels
    in WebGL and its DOM has no text for them."""

    def __init__(self) -> None:
        self.text: dict[str, str] = {}
        self.changed_s = time.monotonic()
        """When a label's text last changed (``time.monotonic()``)."""
        self._decompressor = zstandard.ZstdDecompressor()

    def frame(self, payload: str | bytes) -> None:
        """Take in one frame the page received."""
        if not isinstance(payload, bytes) or len(payload) < 16:
            return
        inner_len = int.from_bytes(payload[0:8], "little")
        packed_len = int.from_bytes(payload[8:16], "little")
        inner = self._decompressor.decompress(payload[16 : 16 + packed_len], inner_len)
        for message in msgspec.msgpack.decode(inner).get("messages", []):
            name = message.get("name")
            if not isinstance(name, str) or not name.startswith(LABELS):
                continue
            if message.get("type") == "LabelMessage":
                text = message.get("props", {}).get("text")
            elif message.get("type") == "SceneNodeUpdateMessage":
                text = message.get("updates", {}).get("text")
            else:
                continue
            robot_id = name[len(LABELS) :]
            if isinstance(text, str) and self.text.get(robot_id) != text:
                self.text[robot_id] = text
                self.changed_s = time.monotonic()

    def all_live(self, robot_ids: Sequence[str], *, steady_s: float = 0.0) -> bool:
        """True if every robot's label on the page ends in LIVE, unchanged for ``steady_s``."""
        return time.monotonic() - self.changed_s >= steady_s and all(
            self.text.get(r, "").endswith(" - LIVE") for r in robot_ids
        )


def shoot(url: str, robot_ids: Sequence[str], size: tuple[int, int], timeout_s: float) -> bytes:
    """The page at ``url`` while every robot's label says LIVE (before and after the shot),
    as PNG bytes."""
    labels = PageLabels()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(BACKGROUND), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": size[0], "height": size[1]})
            page.on("websocket", lambda socket: socket.on("framereceived", labels.frame))
            page.goto(url)
            deadline = time.monotonic() + timeout_s
            closed = False
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"labels on the page not all LIVE: {labels.text}")
                steady = labels.all_live(robot_ids, steady_s=STEADY_S)
                if not (steady and HELP_TEXT in page_text(page)):
                    page.wait_for_timeout(200)  # Playwright delivers the frames while it waits
                    continue
                if not closed:  # the page's notice that WebGL runs in software here
                    page.evaluate(
                        "() => document.querySelectorAll('.mantine-Notification-closeButton')"
                        ".forEach(b => b.click())"
                    )
                    closed = True
                    continue
                # two animation frames: the canvas shows the state the labels came with
                page.evaluate(
                    "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
                )
                shot_s = time.monotonic()
                try:
                    png: bytes = page.screenshot(timeout=SHOT_TIMEOUT_S * 1000)
                except PlaywrightTimeoutError:  # a starved renderer; seen on a busy machine
                    log.info("no screenshot within %g s; again", SHOT_TIMEOUT_S)
                    continue
                page.wait_for_timeout(0)  # the frames that came during the shot
                if labels.all_live(robot_ids) and labels.changed_s < shot_s:
                    return png
                log.info("a label changed while the screenshot was taken; again")
        finally:
            browser.close()


def page_text(page: Page) -> str:
    """Everything the page's DOM shows as text."""
    text: str = page.evaluate("() => document.body.innerText")
    return text


def small_png(png: bytes) -> bytes:
    """``png`` with at most 256 colours (what keeps a screenshot of the hall small)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    quantised = image.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    quantised.save(out, format="PNG", optimize=True)
    return out.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo, take the screenshot, stop the demo."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "web-demo.png")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--seconds", type=float, default=120.0, help="give up after this long")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not CHROMIUM.exists():
        log.error("no %s: scripts/system-deps.sh installs Debian's chromium", CHROMIUM)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp) / "out.txt", Path(tmp) / "err.txt"
        with out.open("w") as stdout, err.open("w") as stderr:
            demo = subprocess.Popen(
                [sys.executable, "-m", "twin", "demo", "--port", "0", "--incidents-every", "0"],
                stdout=stdout,
                stderr=stderr,
                cwd=tmp,
                env={**os.environ, "HALL_TWIN_LESSONS": str(Path(tmp) / "lessons.sqlite3")},
            )
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            url = wait_for(
                lambda: re.search(r"Open (http://\S+/) in a browser", out.read_text()),
                timeout_s=args.seconds,
                what="URL from twin demo",
            ).group(1)
            log.info("twin demo serves %s", url)
            snapshot = wait_for(
                lambda: re.search(r"twin status --snapshot (\S+)", err.read_text()),
                timeout_s=args.seconds,
                what="twin and emulator",
            ).group(1)
            robot_ids = wait_for(
                lambda: all_live(context, snapshot), timeout_s=args.seconds, what="robots LIVE"
            )
            log.info("%d robots LIVE; opening the page in %s", len(robot_ids), CHROMIUM)
            png = shoot(url, robot_ids, (args.width, args.height), args.seconds)
        finally:
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(timeout=30.0)
            except subprocess.TimeoutExpired:
                demo.kill()
            context.destroy(linger=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(small_png(png))
    log.info("wrote %s (%d kB)", args.out, args.out.stat().st_size // 1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
