"""``twin web``: the hall served to browsers with viser, many read-only pages per process.

:class:`WebViewer` owns a kinematic :class:`~twin.world.world.World` (never stepped), a
viser server, and a source (:class:`viz.web.live.LiveLink` for a live twin, a replay, or the
scene at rest), and optionally :class:`viz.web.page.PageExtras`: more on every page (a
replay's clock and its controls, :mod:`viz.web.replay`). Its loop runs at a bounded rate
(``rate_hz``, 30 by default): take in what the source has, pose the world, and send only
what changed, as one atomic batch: instance poses of the robots' mesh kinds, crane parts,
colours when they change, labels, flows, LED panel text. Geometry goes to each browser once,
when it connects.

A slow or stalled browser never slows the loop or the twin: every page is a reader of
viser's shared message buffer, where a newer update of a node replaces the older one not
yet sent, so a page that falls behind skips to the newest state. The twin is read over its
fan-out only; this process never talks to ingest, the command or the control channel, and
what a page sends (camera, colour mode, a click, the tour) changes that page alone.

What a page may send at all is cut down to those view changes (:data:`PAGE_MESSAGES`): viser
registers handlers for more client messages than a page needs, among them
``ShareUrlRequest``, on which viser 1.1 opens a public tunnel to ``share.viser.studio``
whatever ``--host`` says. Hiding the share button does not stop a hand-made WebSocket
message, so :func:`keep_only_view_changes` unregisters every other handler, on the server
and on each connection before it reads its first message.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import viser
from matplotlib import colormaps
from viser.infra import WebsockMessageHandler

from scenes.model import Scene
from sync.fanout import RobotView
from twin.world.world import World
from viz.joint_panel import JointIndex
from viz.readout import (
    DEAD,
    GREY_RGB,
    ColourBy,
    EventTally,
    is_fallen,
    joint_fractions,
    joint_index,
    panel_lines,
    panel_text,
    robot_label,
)
from viz.sources import Source
from viz.tour import CameraTour
from viz.web.hall import WebHall
from viz.web.overlays import RobotLabels, WebFlows
from viz.web.page import Page, PageExtras, joints_markdown
from viz.web.robots import U8, RobotGeometry, RobotNodes, base_colours, recoloured

log = logging.getLogger(__name__)

_LABELS_EVERY_S: Final = 0.1
_PANELS_EVERY_S: Final = 1.0
_JOINTS_EVERY_S: Final = 0.25
_PICK_RADIUS_M: Final = 0.5
_FAILURE_LOG_EVERY_S: Final = 10.0

PAGE_MESSAGES: Final = frozenset({"ViewerCameraMessage", "GuiUpdateMessage", "ScenePointerMessage"})
"""The client messages a page may send, all view changes for that page: its camera, its
controls (colour mode, tour, kiosk; a replay's clock), a click in the scene. viser drops a
message of any other type unread once its handler is gone."""


def keep_only_view_changes(handlers: WebsockMessageHandler) -> None:
    """Unregister every handler of ``handlers`` (viser's server, or one page's connection)
    for a message type not in :data:`PAGE_MESSAGES`: file uploads, forms, commands, drags,
    transform controls, node clicks, and the share URL's tunnel requests."""
    for message_cls in list(handlers._incoming_handlers):
        if message_cls.__name__ not in PAGE_MESSAGES:
            handlers.unregister_handler(message_cls)


@dataclass(frozen=True)
class WebOptions:
    """How the pages are served: address, update rate, kiosk for every page."""

    host: str = "127.0.0.1"
    port: int = 8080
    rate_hz: float = 30.0
    kiosk: bool = False


class WebViewer:
    """The hall on web pages, fed by a source; :meth:`run` is the update loop."""

    def __init__(
        self,
        scene: Scene,
        source: Source,
        *,
        options: WebOptions = WebOptions(),
        notice: Callable[[], str] = lambda: "",
        extras: PageExtras | None = None,
    ) -> None:
        self.scene = scene
        self.extras = extras
        self.source = source
        self.options = options
        self._notice = notice
        self.world = World(scene)
        self.geometry = RobotGeometry(self.world)
        self.robot_ids = self.geometry.robot_ids
        self._base_colours = base_colours(self.geometry)
        self.swatches = self._manufacturer_swatches()
        self.tour = CameraTour(scene)
        with contextlib.redirect_stdout(io.StringIO()):  # viser prints a banner regardless
            self.server = viser.ViserServer(host=options.host, port=options.port, verbose=False)
        self.url = f"http://{options.host}:{self.server.get_port()}/"
        # The server's handlers now; each connection's once viser's own connect callback (run
        # first) has registered them, before the connection reads its first message.
        keep_only_view_changes(self.server._websock_server)
        self.server._websock_server.on_client_connect(keep_only_view_changes)
        scope = self.server.scene
        scope.set_up_direction("+z")
        sx, sy = scene.floor.size
        self.home_position = np.array([0.1 * sx, -0.25 * sy, 0.35 * max(sx, sy)])
        self.home_look_at = np.array([0.5 * sx, 0.5 * sy, 0.0])
        self.server.initial_camera.position = self.home_position
        self.server.initial_camera.look_at = self.home_look_at
        self.server.initial_camera.up = (0.0, 0.0, 1.0)
        self.hall = WebHall(scope, self.world)
        self.robots = RobotNodes(scope, self.geometry)
        self.labels = RobotLabels(scope, self.robot_ids)
        hub = scene.hub
        hub_top = (hub.pose.xyz[0], hub.pose.xyz[1], hub.pose.xyz[2] + hub.size[2])
        self.flows = WebFlows(scope, hub_top, self.robot_ids)
        self.pages: dict[int, Page] = {}
        self._pages_lock = threading.Lock()
        self._joints: dict[str, JointIndex] = {}
        self._applied: dict[str, tuple[Any, ...]] = {}
        self.fallen: set[str] = set()
        self.tally = EventTally()
        self.frames = 0
        self.failed_frames = 0
        self._next_failure_log_s = 0.0
        self._started = time.monotonic()
        self._next_labels_s = self._next_panels_s = self._next_joints_s = 0.0
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)
        self.server.scene.on_click()(self._clicked)

    # -- pages ----------------------------------------------------------------------

    def _manufacturer_swatches(self) -> dict[str, tuple[int, int, int]]:
        """Each manufacturer's colour: of its model's link kinds, the one with the most coloured
        surface (saturation x faces): the livery, not the grey of its joints and limbs."""
        out: dict[str, tuple[int, int, int]] = {}
        best: dict[str, tuple[int, int]] = {}
        for kind in self.geometry.kinds:
            maker = self.world.robot(kind.robot_ids[0]).model.manufacturer
            rgb = tuple(int(c) for c in kind.rgb)
            score = ((max(rgb) - min(rgb)) * len(kind.faces), len(kind.faces))
            if score > best.get(maker, (-1, -1)):
                best[maker] = score
                out[maker] = (rgb[0], rgb[1], rgb[2])
        return out

    def _now(self) -> float:
        return time.monotonic() - self._started

    def _connect(self, client: viser.ClientHandle) -> None:
        page = Page(client, self.tour, kiosk=self.options.kiosk)
        if self.extras is not None:
            page.help_md, page.kiosk_md = self.extras.help_md, self.extras.kiosk_md
        if self.options.kiosk:
            page.enter_kiosk(self._now())
        else:
            page.build_controls(
                self.swatches, self._set_colour, self._tour_pressed, self._kiosk_pressed
            )
            if self.extras is not None:
                self.extras.add(page)
        with self._pages_lock:
            self.pages[client.client_id] = page
        log.info("page %d connected (%d pages)", client.client_id, len(self.pages))

    def _disconnect(self, client: viser.ClientHandle) -> None:
        with self._pages_lock:
            self.pages.pop(client.client_id, None)
        if self.extras is not None:
            self.extras.forget(client.client_id)

    def _set_colour(self, page: Page, mode: ColourBy) -> None:
        with self._pages_lock:
            page.set_colour_mode(mode, self.geometry, self.swatches)
            if page.own_robots is not None:
                page.own_robots.push_colours(self._mode_colours(mode))

    def _tour_pressed(self, page: Page) -> None:
        if page.touring:
            page.touring = False
            return
        page.start_tour(self._now())

    def _kiosk_pressed(self, page: Page) -> None:
        with self._pages_lock:
            page.enter_kiosk(self._now())
        log.info("page %d is a kiosk", page.client.client_id)

    def _clicked(self, event: viser.SceneClickEvent) -> None:
        page = self.pages.get(event.client_id)
        if page is None or page.kiosk:
            return
        robot_id = self.pick(
            np.asarray(event.ray_origin, dtype=np.float64),
            np.asarray(event.ray_direction, dtype=np.float64),
        )
        page.selected = robot_id
        log.info("page %d selected %s", event.client_id, robot_id)
        self._show_joints(page)

    def pick(self, origin: np.ndarray, direction: np.ndarray) -> str | None:
        """The robot nearest a ray (within half a metre of its vertical axis), if any."""
        direction = direction / max(float(np.linalg.norm(direction)), 1e-12)
        best: tuple[float, str] | None = None
        for robot_id in self.robot_ids:
            x, y, top = self.geometry.head_position(robot_id)
            distance, along = _ray_to_segment(
                origin, direction, np.array([x, y, 0.0]), np.array([x, y, top])
            )
            if distance < _PICK_RADIUS_M and (best is None or along < best[0]):
                best = (along, robot_id)
        return None if best is None else best[1]

    def _show_joints(self, page: Page) -> None:
        if page.joints is None:
            return
        if page.selected is None:
            page.joints.content = "Click a robot for its joints."
            return
        view = self.source.robots.get(page.selected)
        page.joints.content = joints_markdown(page.selected, view, self._joints.get(page.selected))

    # -- the loop --------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Frames at ``rate_hz`` until ``stop`` is set (a late frame is not made up)."""
        period_s = 1.0 / self.options.rate_hz
        due = time.monotonic()
        while not stop.is_set():
            self._guarded_step()
            due += period_s
            delay = due - time.monotonic()
            if delay < 0.0:
                due, delay = time.monotonic(), 0.0
            stop.wait(delay)

    def _guarded_step(self) -> None:
        """One frame; a frame that raises is counted and logged, and the loop goes on.

        viser 1.1 wakes its sender with ``asyncio.Event.set()`` called from this
        thread as well as from its loop, which races with the loop's own waiters
        ("deque mutated during iteration"); the message itself is already queued
        when that raises, so the next frame delivers it.  A viewer must not go
        dark for good over one frame.
        """
        try:
            self.step()
        except Exception:  # the loop outlives any one frame
            self.failed_frames += 1
            now = time.monotonic()
            if now >= self._next_failure_log_s:
                self._next_failure_log_s = now + _FAILURE_LOG_EVERY_S
                log.warning(
                    "a web frame failed (%d so far); the viewer goes on",
                    self.failed_frames,
                    exc_info=True,
                )

    def step(self) -> None:
        """One frame: state in, pose, send what changed."""
        now = self._now()
        changed = self.source.poll() or self.frames == 0
        moved = self._apply() if changed else False
        with self._pages_lock:
            pages = list(self.pages.values())
        # Pose before the atomic block: while it is open no page's sender takes anything
        # from viser's buffer (a sender that finds it open waits a whole window, 1/60 s),
        # so the block only queues what is ready.
        poses = []
        if moved:
            self.geometry.update()
            poses = self.geometry.all_instance_poses()
        with self.server.atomic():
            if moved:
                self.robots.push_poses(poses)
                self.hall.update_cranes()
                for page in pages:
                    if page.own_robots is not None:
                        page.own_robots.push_poses(poses)
            if changed:
                self._recolour(pages)
            if now >= self._next_labels_s:
                self._next_labels_s = now + _LABELS_EVERY_S
                self._update_labels()
            self._update_flows(now)
            if now >= self._next_panels_s:
                self._next_panels_s = now + _PANELS_EVERY_S
                lines = panel_lines(
                    list(self.source.robots.values()),
                    fallen=len(self.fallen),
                    failures_seen=self.tally.failures_seen,
                    lessons_seen=self.tally.lessons_seen,
                )
                for panel in self.scene.panels:
                    self.hall.set_panel_text(panel.id, panel_text(panel.shows, lines))
            show_joints = now >= self._next_joints_s
            if show_joints:
                self._next_joints_s = now + _JOINTS_EVERY_S
            notice = self._notice()
            for page in pages:
                page.show_notice(notice)
                page.move_camera(now)
                if show_joints and page.selected is not None:
                    self._show_joints(page)
            if self.extras is not None:
                self.extras.update(pages)
        self.frames += 1

    def _apply(self) -> bool:
        """Pose the world from the views that changed; True if anything moved."""
        moved = False
        for view in self.source.robots.values():
            key: tuple[Any, ...] = (
                view.stamp_ns,
                view.epoch,
                view.base_position_m,
                view.base_orientation_xyzw,
            )
            if self._applied.get(view.robot_id) == key or view.robot_id not in self.world.robots:
                continue
            self._applied[view.robot_id] = key
            cached = self._joints.get(view.robot_id)
            if cached is None or cached.names != view.joint_names:
                index = joint_index(self.world, view)
                if index is not None:
                    self._joints[view.robot_id] = index
            if view.positions:
                self.world.set_joint_positions(
                    view.robot_id, dict(zip(view.joint_names, view.positions, strict=True))
                )
            self.world.set_base_pose(
                view.robot_id, view.base_position_m, view.base_orientation_xyzw
            )
            moved = True
        for crane in self.source.cranes.values():
            place = (crane.bridge_m, crane.trolley_m, crane.hoist_m)
            if self._applied.get(f"crane:{crane.crane_id}") == place:
                continue
            self._applied[f"crane:{crane.crane_id}"] = place
            try:
                self.world.set_crane(
                    crane.crane_id,
                    bridge_m=crane.bridge_m,
                    trolley_m=crane.trolley_m,
                    hoist_m=crane.hoist_m,
                )
            except (ValueError, KeyError) as exc:
                log.warning("crane %s not drawn at its reported place: %s", crane.crane_id, exc)
            moved = True
        return moved

    def _dead(self) -> dict[str, bool]:
        return {r: v.liveness in DEAD for r, v in self.source.robots.items()}

    def _mode_colours(self, mode: ColourBy) -> list[U8]:
        """Each kind's instance colours for a colour mode, STALE/GONE robots grey."""
        if mode == "manufacturer":
            colours = self._base_colours
        else:
            turbo = colormaps["turbo"]
            values: dict[str, dict[int, float]] = {}
            for robot_id, view in self.source.robots.items():
                index = self._joints.get(robot_id)
                if index is None or not view.positions:
                    continue
                fractions = np.clip(joint_fractions(mode, view, index), 0.0, 1.0)
                values[robot_id] = dict(zip(index.link.tolist(), fractions.tolist(), strict=True))
            colours = []
            for kind in self.geometry.kinds:
                levels = [values.get(r, {}).get(kind.link, 0.0) for r in kind.robot_ids]
                colours.append((turbo(np.asarray(levels))[:, :3] * 255).astype(np.uint8))
        return recoloured(self.geometry, colours, grey=self._dead(), grey_rgb=GREY_RGB)

    def _recolour(self, pages: list[Page]) -> None:
        self.robots.push_colours(self._mode_colours("manufacturer"))
        by_mode: dict[str, list[U8]] = {}
        for page in pages:
            if page.own_robots is not None:
                if page.colour_by not in by_mode:
                    by_mode[page.colour_by] = self._mode_colours(page.colour_by)
                page.own_robots.push_colours(by_mode[page.colour_by])

    def _update_labels(self) -> None:
        views = self.source.robots
        self.fallen = {r for r, v in views.items() if r in self.world.robots and is_fallen(v)}
        heads = {r: self.geometry.head_position(r) for r in self.robot_ids}
        texts = {r: robot_label(views.get(r), r, fallen=r in self.fallen) for r in self.robot_ids}
        self.labels.update(heads, texts, self.fallen)

    def _update_flows(self, now: float) -> None:
        views = self.source.robots
        chest = {}
        rates = {}
        for robot_id in self.robot_ids:
            x, y, z = self.geometry.head_position(robot_id)
            chest[robot_id] = (x, y, z - 0.55)
            view: RobotView | None = views.get(robot_id)
            rates[robot_id] = (
                view.in_bytes_per_s if view is not None and view.liveness not in DEAD else 0.0
            )
        for event in self.source.new_events():
            burst = self.tally.take(event, views.values())
            if burst is not None:
                self.flows.share_lesson(now, burst, event.source_id)
        self.flows.update(now, chest, rates)

    def close(self) -> None:
        """Stop serving; release the world and the source."""
        self.server.stop()
        self.world.close()
        self.source.close()


def _ray_to_segment(
    origin: np.ndarray, direction: np.ndarray, a: np.ndarray, b: np.ndarray
) -> tuple[float, float]:
    """Closest distance between a ray and a segment, and how far along the ray it is."""
    samples = np.linspace(0.0, 1.0, 9)[:, None]
    points = a + (b - a) * samples
    along = np.clip((points - origin) @ direction, 0.0, None)
    nearest = origin + along[:, None] * direction
    distances = np.linalg.norm(points - nearest, axis=1)
    i = int(np.argmin(distances))
    return float(distances[i]), float(along[i])
