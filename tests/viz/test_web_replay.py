"""``twin web --replay`` in a real browser (Debian's headless Chromium, driven by Playwright):
a recording of the emulated hall (``twin live --record``, T3-01 loses its grip, T3-04 falls)
served on the desktop replay's source: the page shows the robots, Play advances the shared
clock on every page, "Next failure" jumps to the failure's time; a file that is not a
recording is one line and exit 2, a cut one is served with one warning line."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Browser, Page

from tests.helpers import wait_for
from tests.viz.web_pages import (
    PAGE_LOAD_S,
    coloured_share,
    look_at,
    opened,
    page_text,
    the_page,
    wait_text,
)
from twin.cli.replay import load_source
from viz.web.replay import NEXT_FAILURE, PAUSE, PLAY, SPEED, ReplayClock
from viz.web.server import WebOptions, WebViewer

SHOWN = "T3-02"  # a Tessel working all through the recording: teal on the page


@pytest.fixture(scope="module")
def served(fall_recording: Path) -> Iterator[tuple[WebViewer, ReplayClock]]:
    """The recording on a web viewer (free port), its loop in a thread, paused at 0 s."""
    source = load_source(fall_recording)
    clock = ReplayClock(source, name=fall_recording.name)
    viewer = WebViewer(source.scene, clock, options=WebOptions(port=0), extras=clock)
    stop = threading.Event()
    loop = threading.Thread(target=viewer.run, args=(stop,), daemon=True)
    loop.start()
    try:
        yield viewer, clock
    finally:
        stop.set()
        loop.join(timeout=10.0)
        viewer.close()


@pytest.fixture(scope="module")
def first(browser: Browser, served: tuple[WebViewer, ReplayClock]) -> Iterator[Page]:
    """One page on the replay, kept open for the module's tests (a page load is slow)."""
    with opened(browser, served[0].url) as page:
        wait_text(page, "Replay of")
        yield page


def test_the_page_shows_the_recorded_robots(
    first: Page, served: tuple[WebViewer, ReplayClock], fall_recording: Path
) -> None:
    web, clock = served
    page = first
    clock.seek(2.0)  # every robot has reported by then: in colour, REPLAY
    wait_text(page, f"Replay of {fall_recording.name}")
    wait_text(page, "t = 2.00 s")
    assert "paused" in page_text(page) and "Colour by" in page_text(page)
    client = web.pages[the_page(web)].client
    wait_for(
        lambda: all(web.labels.text[r].endswith("REPLAY") for r in web.robot_ids),
        timeout_s=10.0,
        what="every robot REPLAY at 2 s",
    )
    x, y, top = web.geometry.head_position(SHOWN)
    look_at(client, np.array([x, y, top - 0.7]), np.array([-1.6, -1.6, 0.3]))
    box = (600, 300, 680, 460)  # the robot's torso and legs, under the label
    wait_for(
        lambda: coloured_share(page.screenshot(), box) > 0.2,
        timeout_s=PAGE_LOAD_S,
        what=f"{SHOWN} drawn in colour on the page",
    )


def test_play_advances_the_clock_every_page_shares(
    browser: Browser, first: Page, served: tuple[WebViewer, ReplayClock]
) -> None:
    web, clock = served
    clock.seek(0.5)
    wait_for(lambda: abs(clock.replay.t_s - 0.5) < 1e-9, timeout_s=5.0, what="the seek")
    with opened(browser, web.url) as second:
        wait_text(first, "t = 0.50 s")
        wait_text(second, "t = 0.50 s")
        # a quarter of real time, chosen on the page: the rest of the test fits in the recording
        first.get_by_role("combobox", name=SPEED).click()
        first.get_by_role("option", name="x0.25").click()
        wait_for(lambda: clock.replay.speed == 0.25, timeout_s=10.0, what="x0.25")
        first.get_by_role("button", name=PLAY).click()
        wait_for(lambda: clock.replay.t_s > 1.0, timeout_s=10.0, what="the replay playing")
        wait_text(second, "playing")  # the other page's clock moves too
        wait_for(
            lambda: PAUSE in [b.strip() for b in second.get_by_role("button").all_inner_texts()],
            timeout_s=10.0,
            what="Pause on the other page",
        )
        second.get_by_role("button", name=PAUSE).click()
        wait_for(lambda: not clock.replay.playing, timeout_s=10.0, what="paused from page two")
        held = clock.replay.t_s
        wait_text(first, "paused")
        assert clock.replay.t_s == held


def test_next_failure_jumps_to_the_failures_time(
    first: Page, served: tuple[WebViewer, ReplayClock]
) -> None:
    _web_viewer, clock = served
    page = first
    failures = clock.failures
    assert len(failures) >= 2, [(e.id, e.kind, e.t_s) for e in clock.replay.events]
    clock.seek(0.0)
    wait_for(lambda: clock.replay.t_s == 0.0, timeout_s=5.0, what="the seek")
    wait_text(page, "t = 0.00 s")
    for expected in failures[:2]:
        page.get_by_role("button", name=NEXT_FAILURE).click()
        wait_for(
            lambda e=expected: clock.jumped_to == e,  # type: ignore[misc]
            timeout_s=10.0,
            what=f"a jump to {expected.id}",
        )
        assert abs(clock.replay.t_s - expected.t_s) < 1e-9
        assert not clock.replay.playing
        wait_text(page, f"at failure {expected.id}")
        wait_text(page, f"t = {expected.t_s:.2f} s")
    assert failures[0].t_s < failures[1].t_s


def test_a_frame_that_raises_does_not_stop_the_viewer(
    first: Page, served: tuple[WebViewer, ReplayClock]
) -> None:
    """viser 1.1 can raise from a send (a race in its wake-up); later frames still go out."""
    viewer, clock = served
    real_step = viewer.step
    raised: list[bool] = []
    # The viewer is shared by this module's tests, and viser's own race may already
    # have cost a frame before this test (CI saw one): count from here.
    before = viewer.failed_frames

    def failing_once() -> None:
        if not raised:
            raised.append(True)
            raise RuntimeError("deque mutated during iteration")
        real_step()

    viewer.step = failing_once  # type: ignore[method-assign]
    try:
        wait_for(lambda: raised, timeout_s=10.0, what="the failing frame")
        wait_for(lambda: viewer.failed_frames > before, timeout_s=10.0, what="the failure counted")
        frames = viewer.frames
        wait_for(lambda: viewer.frames > frames + 5, timeout_s=10.0, what="frames after it")
        clock.seek(0.5)
        wait_text(first, "t = 0.50 s")  # and the page still follows
    finally:
        del viewer.step


def _web(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twin", "web", "--port", "0", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_file_that_is_no_recording_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mcap"
    bad.write_text("these are notes, not a recording\n")
    done = _web("--replay", str(bad))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"twin web: {bad}"), lines


def test_a_cut_recording_is_served_with_one_warning_line(
    fall_recording: Path, tmp_path: Path
) -> None:
    cut = tmp_path / "cut.mcap"
    data = fall_recording.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    done = _web("--replay", str(cut), "--seconds", "0.5")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    warnings = [line for line in lines if "warning" in line]
    assert len(warnings) == 1, lines
    assert warnings[0].startswith(f"twin web: warning: {cut}: cut recording"), warnings
    assert any(line.startswith("twin web: http://") for line in lines), lines


def _policies(pid: int) -> set[tuple[int, int]]:
    """(scheduling policy, nice value) of each of a process's threads (Linux)."""
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that just ended
            tid = int(task.name)
            found.add((os.sched_getscheduler(tid), os.getpriority(os.PRIO_PROCESS, tid)))
    return found


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling policies")
def test_the_server_yields_the_cpu_to_the_twin(fall_recording: Path) -> None:
    """``twin web`` runs every thread at SCHED_IDLE by default (``--priority idle``), at nice
    10 with ``low``, as it was started with ``normal``."""
    command = [sys.executable, "-m", "twin", "web", "--port", "0", "--replay", str(fall_recording)]
    policy, nice = os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)
    for args, expected in (
        ((), (os.SCHED_IDLE, nice)),
        (("--priority", "low"), (policy, min(19, nice + 10))),
        (("--priority", "normal"), (policy, nice)),
    ):
        web = subprocess.Popen(
            [*command, *args, "--seconds", "60"], stderr=subprocess.PIPE, text=True
        )
        try:
            assert web.stderr is not None
            line = web.stderr.readline()  # the URL: its viewer's threads are running
            assert line.startswith("twin web: http://"), line
            assert _policies(web.pid) == {expected}, args
        finally:
            web.send_signal(signal.SIGINT)
            web.wait(timeout=30)
