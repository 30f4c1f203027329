"""``twin web`` in a real browser (Debian's headless Chromium, driven by Playwright) against a
live twin fed by the emulator: the hall loads with every robot labelled, the poses the page
receives follow the twin, a frozen robot turns grey on the page, a click shows a robot's
joints, a kiosk page tours, and nothing a page does reaches the command channel (the twin's
restart and bad addresses: ``test_web_restart.py``)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest
import zmq
from playwright.sync_api import Browser, Page

from scenes import load_scene
from scenes.model import Scene
from sync.fanout import request_snapshot, request_status
from tests.helpers import STARTUP_S, Proc, wait_for
from tests.viz.web_pages import (
    PAGE_LOAD_S,
    PageScene,
    coloured_share,
    look_at,
    opened,
    page_text,
    serving,
    tcp_connections,
    the_page,
    wait_text,
)
from twin.world.world import World
from viz.readout import DEAD, GREY_RGB
from viz.web.live import LiveLink
from viz.web.page import HELP_MD, KIOSK_MD
from viz.web.robots import RobotGeometry
from viz.web.server import WebViewer

ANY = "tcp://127.0.0.1:*"
FROZEN = "T3-02"  # a Tessel: teal on the page while it reports, grey once it is STALE
FREEZE_AT_S = 150.0  # after the tests before it (60-110 s in a full run), so it is in colour first


@dataclass
class Hall:
    scene: Scene
    fanout: str
    snapshot: str
    command: str
    control: str
    emulating_since_mono_s: float = 0.0
    """When the emulator said it was emulating (its fault times count from about then)."""


@pytest.fixture(scope="module")
def hall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hall]:
    """The default hall: a twin with its command channel (CURVE keys), fed by the emulator;
    FROZEN stops reporting FREEZE_AT_S into the run."""
    keys = tmp_path_factory.mktemp("web") / "keys"
    subprocess.run(
        [sys.executable, "-m", "twin", "keys", "init", str(keys)], check=True, capture_output=True
    )
    twin = Proc(
        "live", "--ingest", ANY, "--fanout", ANY, "--snapshot", ANY,
        "--keys", str(keys), "--command", ANY, "--control", ANY,
    )  # fmt: skip
    emulator: Proc | None = None
    try:
        found = twin.wait_line(
            r"ingest (\S+) fan-out (\S+) snapshot (\S+) command (\S+) control (\S+)", STARTUP_S
        )
        ingest, fanout, snapshot, command, control = found.groups()
        emulator = Proc(
            "emulate", "--ingest", ingest, "--keys", str(keys), "--no-noise",
            "--incidents-every", "0", "--fault", f"{FROZEN}:freeze@{FREEZE_AT_S:g}s",
        )  # fmt: skip
        emulator.wait_line(r"emulating", STARTUP_S)
        yield Hall(load_scene(), fanout, snapshot, command, control, time.monotonic())
    finally:
        if emulator is not None:
            emulator.stop()
        twin.stop()


@pytest.fixture(scope="module")
def web(hall: Hall) -> Iterator[WebViewer]:
    link = LiveLink(hall.fanout, hall.snapshot)
    with serving(hall.scene, link) as viewer:
        wait_for(lambda: link.source is not None, timeout_s=STARTUP_S, what="the web's twin")
        yield viewer


def wait_until(condition: Callable[[], bool], *, timeout_s: float) -> bool:
    """True as soon as ``condition`` holds, False if it did not within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def choose(page: Page, colour_mode: str) -> None:
    """Pick a colour mode in the page's "Colour by" list, as a person would."""
    page.get_by_role("combobox").first.click()
    page.get_by_role("option", name=colour_mode).click()


def test_the_page_loads_the_hall_with_every_robot_labelled(
    browser: Browser, web: WebViewer, hall: Hall
) -> None:
    with opened(browser, web.url) as page:
        wait_text(page, "Read-only view of the live hall")
        for maker in {web.world.robot(r).model.manufacturer for r in web.robot_ids}:
            assert maker in page_text(page)  # the colour legend
        client = web.pages[the_page(web)].client
        # the browser renders and reports its camera: the scene reached it
        wait_for(lambda: client.camera.update_timestamp > 0, timeout_s=PAGE_LOAD_S, what="camera")
    assert sorted(web.robot_ids) == sorted(r.id for r in hall.scene.robots)
    instances = sorted(r for kind in web.geometry.kinds for r in set(kind.robot_ids))
    assert set(instances) == set(web.robot_ids)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        twin_views = {
            v.robot_id: v for v in request_snapshot(context, hall.snapshot, timeout_s=5.0).robots
        }
    finally:
        context.destroy(linger=0)

    def labelled() -> bool:
        for robot_id, view in twin_views.items():
            head, _, tail = web.labels.text[robot_id].partition("\n")
            task, _, state = tail.partition(" - ")
            if head != f"{robot_id} {view.manufacturer}" or task != view.task:
                return False
            if state not in {"LIVE", "LATE", "STALE", "GONE", "FALLEN"}:
                return False
        return True

    wait_for(labelled, timeout_s=10.0, what="a label per robot: id, manufacturer, task, state")


def test_robot_poses_on_the_page_follow_the_twin(
    browser: Browser, web: WebViewer, hall: Hall
) -> None:
    """The link positions the page itself received (its own WebSocket frames) put a walking
    robot where the twin has it, sample after sample, and move with it."""
    robot_id = "K1-03"  # walking
    nodes = [
        (kind.name, kind.robot_ids.index(robot_id))
        for kind in web.geometry.kinds
        if robot_id in kind.robot_ids
    ]
    held = PageScene()
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    samples = []
    with World(hall.scene) as world, opened(browser, web.url, frames=held.frame) as page:
        reference = RobotGeometry(world)

        def page_holds_the_robot() -> bool:
            page.wait_for_timeout(100)  # Playwright hands over frames while it runs
            return all(name in held.positions for name, _ in nodes)

        wait_for(page_holds_the_robot, timeout_s=PAGE_LOAD_S, what=f"{robot_id} on the page")
        try:
            for _ in range(6):
                view = next(
                    v
                    for v in request_snapshot(context, hall.snapshot, timeout_s=5.0).robots
                    if v.robot_id == robot_id
                )
                page.wait_for_timeout(100)  # what the twin sent meanwhile reaches the page
                shown = np.array([held.positions[name][index] for name, index in nodes])
                world.set_joint_positions(
                    robot_id, dict(zip(view.joint_names, view.positions, strict=True))
                )
                world.set_base_pose(robot_id, view.base_position_m, view.base_orientation_xyzw)
                reference.update()
                expected = np.array(
                    [
                        reference.instance_poses(k)[0][kind.robot_ids.index(robot_id)]
                        for k, kind in enumerate(reference.kinds)
                        if robot_id in kind.robot_ids
                    ]
                )
                # the page lags the twin by at most a frame or two of a slow walk
                assert float(np.median(np.linalg.norm(shown - expected, axis=1))) < 0.15
                samples.append(shown)
                page.wait_for_timeout(400)  # spacing the samples along the walk
        finally:
            context.destroy(linger=0)
    travelled = max(float(np.abs(s - samples[0]).max()) for s in samples)
    assert travelled > 0.02, "the robot did not move on the page"
    for name, _ in nodes:  # the scene's replay gives each node its first positions; then poses
        assert held.updates[name] > 1, f"{name}: the page had only its first positions"


def test_a_click_on_a_robot_shows_its_joints(browser: Browser, web: WebViewer) -> None:
    robot_id = "H2-01"
    with opened(browser, web.url) as page:
        wait_text(page, "Click a robot for its joints")
        page_id = the_page(web)
        client = web.pages[page_id].client
        x, y, top = web.geometry.head_position(robot_id)
        look_at(client, np.array([x, y, top - 0.7]), np.array([-2.2, -2.2, 0.4]))

        def click_selects() -> bool:
            page.mouse.click(640, 360, delay=150)  # a press as long as a person's
            return wait_until(lambda: web.pages[page_id].selected == robot_id, timeout_s=2.0)

        wait_for(click_selects, timeout_s=PAGE_LOAD_S, interval_s=0.5, what="a click selecting")
        wait_text(page, f"{robot_id} (Orca Mechatronics")
        wait_text(page, "left_knee")
        assert web.pages[page_id].selected == robot_id
        # colouring this page by effort gives it its own robots; other pages keep theirs
        choose(page, "effort / rating")
        wait_for(lambda: web.pages[page_id].own_robots is not None, timeout_s=10.0, what="mode")
        wait_text(page, "effort / rating")
        assert web.robots.colours()[0].tolist() == web._mode_colours("manufacturer")[0].tolist()


def test_a_kiosk_page_has_no_controls_and_tours(browser: Browser, web: WebViewer) -> None:
    with opened(browser, web.url + "?kiosk") as page:
        wait_text(page, KIOSK_MD.replace("**", ""))
        page_id = the_page(web)
        assert web.pages[page_id].kiosk
        assert "Colour by" not in page_text(page) and HELP_MD[:20] not in page_text(page)
        client = web.pages[page_id].client
        wait_for(lambda: client.camera.update_timestamp > 0, timeout_s=PAGE_LOAD_S, what="camera")
        first = page.screenshot()
        start = np.array(client.camera.position)
        wait_for(
            lambda: np.linalg.norm(np.array(client.camera.position) - start) > 0.05,
            timeout_s=10.0,
            what="the tour moving the camera",
        )
        wait_for(lambda: page.screenshot() != first, timeout_s=10.0, what="the view changing")


def test_a_frozen_robot_turns_grey_on_the_page(
    browser: Browser, hall: Hall, web: WebViewer
) -> None:
    with opened(browser, web.url) as page:
        wait_text(page, "Click a robot for its joints")
        client = web.pages[the_page(web)].client
        x, y, top = web.geometry.head_position(FROZEN)
        look_at(client, np.array([x, y, top - 0.7]), np.array([-1.6, -1.6, 0.3]))
        box = (600, 300, 680, 460)  # the robot's torso and legs, under the label
        wait_for(
            lambda: coloured_share(page.screenshot(), box) > 0.2,
            timeout_s=PAGE_LOAD_S,
            what=f"{FROZEN} in colour on the page",
        )
        # STALE once its gateway froze (a busy 2-core machine may make any robot briefly
        # STALE before that; it comes back, so only a STALE after the freeze counts)
        frozen_from = hall.emulating_since_mono_s + FREEZE_AT_S
        wait_for(
            lambda: (
                time.monotonic() > frozen_from
                and web.labels.text[FROZEN].endswith(("STALE", "GONE"))
            ),
            timeout_s=FREEZE_AT_S + STARTUP_S,
            what=f"{FROZEN} STALE after its freeze",
        )
        wait_for(
            lambda: coloured_share(page.screenshot(), box) < 0.05,
            timeout_s=10.0,
            what=f"{FROZEN} grey on the page",
        )

    def grey_robots() -> set[str]:
        greys = set()
        for kind, colours in zip(web.geometry.kinds, web.robots.colours(), strict=True):
            greys |= {
                r for r, rgb in zip(kind.robot_ids, colours, strict=True) if tuple(rgb) == GREY_RGB
            }
        return greys

    def dead_in_the_twin() -> set[str]:
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            views = request_snapshot(context, hall.snapshot, timeout_s=5.0).robots
        finally:
            context.destroy(linger=0)
        return {v.robot_id for v in views if v.liveness in DEAD}

    robots = len(web.robot_ids)

    def grey_as_the_twin_says() -> bool:
        greys, dead = grey_robots(), dead_in_the_twin()  # one read of each a poll
        return FROZEN in greys and greys == dead and len(dead) <= robots // 2

    # the viewer's grey robots are the ones the twin calls STALE or GONE, and only those:
    # FROZEN for good; on this 2-core machine the browser's software WebGL can starve the
    # emulator, so another robot may be briefly STALE, and grey with it; the two are read
    # close together, polled until they agree (with most robots still reporting)
    wait_for(
        grey_as_the_twin_says,
        timeout_s=20.0,
        interval_s=0.2,
        what="grey in the viewer exactly the robots the twin calls STALE or GONE",
    )


def test_nothing_a_page_does_reaches_the_command_channel(browser: Browser, hall: Hall) -> None:
    web = Proc("web", "--connect", hall.fanout, "--snapshot", hall.snapshot, "--port", "0")
    try:
        url = web.wait_line(r"twin web: (\S+) ", STARTUP_S).group(1)
        with opened(browser, url) as page:
            wait_text(page, "Click a robot for its joints")
            for x, y in ((640, 360), (500, 400), (800, 300)):
                page.mouse.click(x, y)
            page.mouse.move(600, 300)
            page.mouse.down()
            page.mouse.move(700, 350)
            page.mouse.up()
            choose(page, "speed / limit")
            page.get_by_role("button", name="Tour").click()
            page.get_by_role("button", name="Kiosk").click()
            wait_text(page, KIOSK_MD.replace("**", ""))
            # its only sockets: the pages' (its HTTP port) and the twin's fan-out and snapshot
            http_port = int(url.rstrip("/").rsplit(":", 1)[1])
            twin_ports = {int(e.rsplit(":", 1)[1]) for e in (hall.fanout, hall.snapshot)}
            connections = [c for c in tcp_connections(web.popen.pid) if c[1]]
            for local, remote, _state in connections:
                assert local == http_port or remote in twin_ports, (local, remote, hall)
            assert int(hall.fanout.rsplit(":", 1)[1]) in {c[1] for c in connections}
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            dispatch = request_status(context, hall.snapshot, timeout_s=5.0)["dispatch"]
        finally:
            context.destroy(linger=0)
        assert dispatch["requests"] == 0 and dispatch["sent"] == 0
        assert not dispatch["dropped"], dispatch["dropped"]  # not even an unauthenticated try
    finally:
        web.stop()
