"""One real browser for ``benchmarks/web.py``: Debian's Chromium, headless with software
WebGL, driven by Playwright, opening the page beside the simulated ones.

Usage (``benchmarks/web.py`` starts it)::

    python -m benchmarks.web_browser URL --window-start T0 --window-end T1

It loads the page as a visitor does (viser's HTML and scripts over HTTP, then its
WebSocket) and counts every WebSocket frame the page receives (Playwright's
``framereceived``) as the simulated pages count theirs
(:class:`benchmarks.web_clients.ClientFigures`). Its ``first_frame_s`` runs from asking for
the page (HTML, scripts and WebGL set-up included) to the end of viser's replay of the
scene to it. ``drawn`` says whether the page's canvas showed the hall at the end: a
screenshot with more than 15 % of its pixels not white (``drawn_share``; the hall's floor
alone covers about 30 % of the default view, while the page without the scene is white but
for its panel's text).

The browser runs through ``scripts/chromium-background``: at the lowest priority, its
session's scheduling group included; this process and Playwright's driver (which relay and
decode every frame: ``driver_cpu_s``, this process's share) run at nice 19. A visitor's
browser runs on the visitor's machine; here it shares two cores with the twin, the emulator
and the server, and in software WebGL it would take a whole core from them (see the README).
One JSON object on stdout when the window is over.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Final

import numpy as np
import zstandard

from benchmarks.web_clients import ClientFigures, count_window

ROOT: Final = Path(__file__).resolve().parent.parent
CHROMIUM: Final = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
"""Debian's package (scripts/system-deps.sh); the wrapper runs ``$CHROMIUM`` when it is set."""
BACKGROUND: Final = ROOT / "scripts" / "chromium-background"
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",
]
DRAWN_SHARE_MIN: Final = 0.15


def drawn_share(png: bytes) -> float:
    """The share of a screenshot's pixels that are not white (the page's background)."""
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return float(np.mean(image.min(axis=2) < 245))


def real_page(
    url: str, window: tuple[float, float], screenshot: Path | None = None
) -> dict[str, object]:
    """The page in Chromium until the window ends: what it received, and whether it drew
    (its last screenshot also written to ``screenshot``, if given)."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    figures = ClientFigures()
    out: dict[str, object] = {"drawn": None, "drawn_share": None}
    if not CHROMIUM.exists():
        figures.error = f"no {CHROMIUM}: scripts/system-deps.sh installs Debian's chromium"
        return {**asdict(figures), **out}
    decompressor = zstandard.ZstdDecompressor()
    opened = time.monotonic()

    def frame(payload: str | bytes) -> None:
        if isinstance(payload, bytes) and len(payload) >= 16:
            count_window(figures, payload, time.monotonic(), opened, window, decompressor)

    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(BACKGROUND), args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                page.on("websocket", lambda socket: socket.on("framereceived", frame))
                opened = time.monotonic()
                page.goto(url)
                while time.monotonic() < window[1]:
                    page.wait_for_timeout(100)  # Playwright hands over frames while it runs
                png = page.screenshot()
                if screenshot is not None:
                    screenshot.write_bytes(png)
                share = drawn_share(png)
                out = {"drawn": share > DRAWN_SHARE_MIN, "drawn_share": round(share, 3)}
            finally:
                browser.close()
    except PlaywrightError as exc:
        figures.error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return {**asdict(figures), **out}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the page; print its figures as one JSON object."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--window-start", type=float, required=True)
    parser.add_argument("--window-end", type=float, required=True)
    parser.add_argument("--screenshot", type=Path, default=None, help="write the last view here")
    args = parser.parse_args(argv)
    os.nice(19)  # this driver and Playwright's (which inherits it) yield too, as the browser
    cpu0 = time.process_time()
    figures = real_page(args.url, (args.window_start, args.window_end), args.screenshot)
    sys.stdout.write(json.dumps({**figures, "driver_cpu_s": time.process_time() - cpu0}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
