"""``twin web`` in a real browser without a hall already running: the page waits for a twin
that is not there yet, outlives its restart, and bad addresses are one line and exit 2.

Apart from ``test_web.py`` on purpose: there a hall runs for the whole module, and a second
twin and emulator beside it, with the browser's software WebGL, overfill 2 cores."""

from __future__ import annotations

import subprocess
import sys

from playwright.sync_api import Browser

from scenes import load_scene
from tests.helpers import STARTUP_S, Proc, wait_for
from tests.viz.web_pages import free_port, opened, serving, the_page, wait_text
from viz.web.live import LiveLink


def test_the_page_waits_for_the_twin_and_outlives_its_restart(
    browser: Browser,
) -> None:
    ports = [free_port() for _ in range(3)]
    ingest, fanout, snapshot = (f"tcp://127.0.0.1:{p}" for p in ports)
    scene = load_scene()
    link = LiveLink(fanout, snapshot, retry_s=0.5, quiet_s=1.0)

    def start_twin() -> Proc:
        twin = Proc("live", "--ingest", ingest, "--fanout", fanout, "--snapshot", snapshot)
        twin.wait_line(r"mirroring", STARTUP_S)
        return twin

    with serving(scene, link) as viewer, opened(browser, viewer.url) as page:
        wait_text(page, f"Waiting for the twin at {fanout}")
        page_id = the_page(viewer)
        twin = start_twin()
        emulator = Proc("emulate", "--ingest", ingest, "--no-noise", "--incidents-every", "0")
        try:
            wait_text(page, "Waiting for the twin", present=False)
            wait_for(
                lambda: all(t.endswith("LIVE") for t in viewer.labels.text.values()),
                timeout_s=STARTUP_S,
                what="every robot LIVE on the page",
            )
            twin.stop()
            wait_text(page, f"The twin at {fanout} is not answering")
            twin = start_twin()
            wait_text(page, "is not answering", present=False)
            wait_for(
                lambda: all(t.endswith("LIVE") for t in viewer.labels.text.values()),
                timeout_s=STARTUP_S,
                what="every robot LIVE again",
            )
            assert list(viewer.pages) == [page_id], "the page reconnected instead of staying"
        finally:
            emulator.stop()
            twin.stop()


def test_bad_connect_address_and_a_port_in_use_are_one_line_and_exit_2() -> None:
    import socket

    def web(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "twin", "web", *args],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    bad = web("--connect", "udp://nowhere", "--port", "0")
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip().splitlines() == [
        "twin web: 'udp://nowhere' is not a tcp://HOST:PORT endpoint"
    ]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = web("--port", str(port))
    assert busy.returncode == 2, busy.stderr
    assert busy.stderr.strip().splitlines() == [
        f"twin web: cannot listen on 127.0.0.1:{port}: port in use"
    ]
