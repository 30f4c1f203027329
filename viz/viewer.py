"""The hall viewer: the live floor in 3D, joint states, and the data flowing to the hub.

Read-only by design: it takes canonical state from a source (:mod:`viz.sources`),
poses its own kinematic copy of the world (no physics step, ever), and draws the hall
(:mod:`viz.hall`), every robot as one batched mesh (:mod:`viz.robot_mesh`), floating
labels, the data-sharing flows (:mod:`viz.flows`) and optionally a LiDAR point layer
(:mod:`viz.lidar`). The same object renders interactively, to a PNG, or to an MP4.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import numpy as np
import pyvista as pv
from matplotlib import colormaps
from numpy.typing import NDArray

from scenes.model import Scene
from sync.fanout import RobotView
from twin.world.world import World
from viz.flows import FlowLayer
from viz.hall import HallDrawing
from viz.joint_panel import JointIndex, JointPanel
from viz.mesh_assets import TRIANGLES_PER_ROBOT
from viz.readout import (
    COLOUR_MODES,
    COLOUR_TITLES,
    ColourBy,
    EventTally,
    is_fallen,
    joint_fractions,
    joint_index,
    panel_lines,
    panel_text,
    robot_label,
)
from viz.robot_mesh import RobotBatch
from viz.sources import Source
from viz.tour import CameraTour

log = logging.getLogger(__name__)

__all__ = ["COLOUR_MODES", "ColourBy", "HallViewer"]

GREY_RGB: Final = np.array([150, 150, 150], dtype=np.uint8)
BACKGROUND_TOP: Final = (0.80, 0.86, 0.94)
BACKGROUND_BOTTOM: Final = (0.97, 0.98, 1.0)
_DEAD: Final = frozenset({"STALE", "GONE"})


@contextlib.contextmanager
def _headless_window_class() -> Iterator[None]:
    """Without a display, create the render window through EGL (Mesa) directly, instead of
    VTK trying X first and warning "bad X server connection". Only while the window is made,
    so child processes with a display are not told so; an explicit
    ``VTK_DEFAULT_OPENGL_WINDOW`` wins."""
    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if not headless or "VTK_DEFAULT_OPENGL_WINDOW" in os.environ:
        yield
        return
    os.environ["VTK_DEFAULT_OPENGL_WINDOW"] = "vtkEGLRenderWindow"
    try:
        yield
    finally:
        os.environ.pop("VTK_DEFAULT_OPENGL_WINDOW", None)


class HallViewer:
    """Draw a hall from a source, on screen or off."""

    def __init__(
        self,
        scene: Scene,
        source: Source,
        *,
        off_screen: bool,
        window_size: tuple[int, int] = (1280, 720),
        colour_by: ColourBy = "manufacturer",
        kiosk: bool = False,
        lidar: bool = False,
        triangles_per_robot: int = TRIANGLES_PER_ROBOT,
    ) -> None:
        self.scene = scene
        self.source = source
        self.kiosk = kiosk
        self.colour_by: ColourBy = colour_by
        self.world = World(scene)
        # no multi-sampling (it costs ~30 ms a frame on a software renderer) and three
        # lights instead of the five-light kit: measured in benchmarks/viewer.py
        with _headless_window_class():
            self.plotter = pv.Plotter(
                off_screen=off_screen, window_size=list(window_size), lighting="three lights"
            )
        self.plotter.disable_anti_aliasing()
        self.plotter.set_background(BACKGROUND_BOTTOM, top=BACKGROUND_TOP)
        self.hall = HallDrawing.build(self.plotter, self.world)
        self.robots = RobotBatch(self.world, triangles_per_robot=triangles_per_robot)
        self._robot_index = {rid: i for i, rid in enumerate(self.robots.robot_ids)}
        data = self.robots.mesh.point_data
        empty = self.robots.mesh.n_points == 0  # a hall without robots
        self._base_rgb = np.zeros((0, 3), np.uint8) if empty else np.asarray(data["rgb"]).copy()
        self._point_robot = np.zeros(0, np.int32) if empty else np.asarray(data["robot"])
        self._point_link = np.zeros(0, np.int32) if empty else np.asarray(data["link"]) + 1
        self._link_values = np.zeros(
            (len(self.robots.robot_ids), int(self._point_link.max(initial=0)) + 2)
        )
        self.robot_actor = None
        if not empty:
            self.robot_actor = self.plotter.add_mesh(
                self.robots.mesh,
                scalars="rgb",
                rgb=True,
                name="robots",
                specular=0.5,
                specular_power=25.0,
                ambient=0.2,
            )
        self._joints: dict[str, JointIndex] = {}
        self.panel = JointPanel(self.plotter)
        hub = scene.hub
        self.flows = FlowLayer(
            self.plotter,
            (hub.pose.xyz[0], hub.pose.xyz[1], hub.pose.xyz[2] + hub.size[2]),
            self.robots.robot_ids,
        )
        self._label_points = pv.PolyData(np.zeros((max(1, len(self.robots.robot_ids)), 3)))
        self._label_points.point_data["label"] = np.array(
            [""] * self._label_points.n_points, dtype=object
        )
        self._label_text: list[str] = []
        self._labels_actor: pv.Actor | None = None
        self._markers = pv.PolyData(np.full((max(1, len(self.robots.robot_ids)), 3), -10.0))
        self.plotter.add_mesh(
            self._markers,
            color=(0.9, 0.1, 0.1),
            point_size=28,
            render_points_as_spheres=True,
            lighting=False,
            name="fallen",
        )
        self.fallen: set[str] = set()
        self.tally = EventTally()
        self.lidar_actor: pv.Actor | None = None
        if lidar:
            self.show_lidar(True)
        self._scalar_bar_mesh: pv.PolyData | None = None
        self._set_colour_bar()
        self.tour = CameraTour(scene)
        self._started = time.monotonic()
        self.frames = 0
        self.home_camera()

    # -- camera -----------------------------------------------------------------

    def home_camera(self) -> None:
        """A three-quarter view of the whole floor."""
        sx, sy = self.scene.floor.size
        self.plotter.camera_position = [
            (-0.15 * sx, -0.55 * sy, 0.55 * max(sx, sy)),
            (0.5 * sx, 0.5 * sy, 0.0),
            (0.0, 0.0, 1.0),
        ]
        self.plotter.camera.view_angle = 40.0

    # -- state in ---------------------------------------------------------------

    def _joint_index(self, view: RobotView) -> JointIndex | None:
        cached = self._joints.get(view.robot_id)
        if cached is not None and cached.names == view.joint_names:
            return cached
        index = joint_index(self.world, view)
        if index is not None:
            self._joints[view.robot_id] = index
        return index

    def apply(self, now_s: float) -> None:
        """Pose the viewer's world from the source's views."""
        for view in self.source.robots.values():
            index = self._joint_index(view)
            if index is None:
                continue
            if view.positions:
                self.world.set_joint_positions(
                    view.robot_id, dict(zip(view.joint_names, view.positions, strict=True))
                )
            self.world.set_base_pose(
                view.robot_id, view.base_position_m, view.base_orientation_xyzw
            )
            self.panel.remember(view, now_s)
        for crane in self.source.cranes.values():
            try:
                self.world.set_crane(
                    crane.crane_id,
                    bridge_m=crane.bridge_m,
                    trolley_m=crane.trolley_m,
                    hoist_m=crane.hoist_m,
                )
            except (ValueError, KeyError) as exc:
                log.warning("crane %s not drawn at its reported place: %s", crane.crane_id, exc)

    # -- drawing ----------------------------------------------------------------

    def update(self, now_s: float | None = None) -> None:
        """One frame: take in new state, pose everything, recolour, move flows and camera."""
        now = time.monotonic() - self._started if now_s is None else now_s
        self.source.poll()
        self.apply(now)
        self.robots.update()
        self.hall.update_cranes()
        self._recolour()
        self._update_labels_and_markers()
        chest = {}
        rates = {}
        for robot_id in self.robots.robot_ids:
            x, y, z = self.robots.head_position(robot_id)
            chest[robot_id] = (x, y, z - 0.35)
            view = self.source.robots.get(robot_id)
            rates[robot_id] = (
                view.in_bytes_per_s if view is not None and view.liveness not in _DEAD else 0.0
            )
        self.flows.update(now, chest, rates)
        for event in self.source.new_events():
            burst = self.tally.take(event, self.source.robots.values())
            if burst is not None:
                self.flows.share_lesson(now, burst, event.source_id)
        self._update_panels()
        if self.kiosk:
            self.tour.apply(self.plotter, now)
        if self.panel.selected is not None:
            self.panel.update(self._joints.get(self.panel.selected))
        self.frames += 1

    def _recolour(self) -> None:
        if self.robot_actor is None:
            return
        rgb = self.robots.mesh.point_data["rgb"]
        if self.colour_by == "manufacturer":
            colours = self._base_rgb.copy()
        else:
            self._link_values[:] = 0.0
            for robot_id, view in self.source.robots.items():
                index = self._joints.get(robot_id)
                robot = self._robot_index.get(robot_id)
                if index is None or robot is None or not view.positions:
                    continue
                self._link_values[robot, index.link + 1] = self._fractions(view, index)
            values = self._link_values[self._point_robot, self._point_link]
            colours = (colormaps["turbo"](np.clip(values, 0.0, 1.0))[:, :3] * 255).astype(np.uint8)
        for robot_id, view in self.source.robots.items():
            robot = self._robot_index.get(robot_id)
            if robot is not None and view.liveness in _DEAD:
                colours[self._point_robot == robot] = GREY_RGB
        rgb[:] = colours

    def _fractions(self, view: RobotView, index: JointIndex) -> NDArray[np.float64]:
        return joint_fractions(self.colour_by, view, index)

    def set_colour_by(self, mode: ColourBy) -> None:
        """Colour links by manufacturer colours, or a joint quantity as a fraction of its limit."""
        self.colour_by = mode
        self._set_colour_bar()

    def _set_colour_bar(self) -> None:
        if self._scalar_bar_mesh is not None:
            self.plotter.remove_actor("colour-bar-holder")
            self.plotter.remove_scalar_bar()
            self._scalar_bar_mesh = None
        if self.colour_by == "manufacturer":
            return
        title = COLOUR_TITLES[self.colour_by]
        holder = pv.PolyData(np.array([[-100.0, -100.0, -100.0], [-100.0, -100.0, -100.0]]))
        holder.point_data[title] = np.array([0.0, 1.0])
        self._scalar_bar_mesh = holder
        self.plotter.add_mesh(
            holder,
            scalars=title,
            cmap="turbo",
            clim=(0.0, 1.0),
            name="colour-bar-holder",
            point_size=0.1,
            scalar_bar_args={"title": title, "vertical": True, "position_x": 0.02},
        )

    def _label(self, view: RobotView | None, robot_id: str) -> str:
        return robot_label(view, robot_id, fallen=robot_id in self.fallen)

    def _update_labels_and_markers(self) -> None:
        ids = self.robots.robot_ids
        heads = np.array([self.robots.head_position(r) for r in ids]) if ids else np.zeros((1, 3))
        self.fallen = set()
        markers = np.full((max(1, len(ids)), 3), -10.0)
        for i, robot_id in enumerate(ids):
            view = self.source.robots.get(robot_id)
            if view is None:
                continue
            if is_fallen(view):
                self.fallen.add(robot_id)
                markers[i] = heads[i] + np.array([0.0, 0.0, 0.5])
        self._markers.points = markers
        texts = [self._label(self.source.robots.get(r), r) for r in ids]
        self._label_points.points = heads + np.array([0.0, 0.0, 0.35])
        if texts != self._label_text:
            self._label_text = texts
            self._labels_actor = self.plotter.add_point_labels(
                self._label_points,
                texts,
                font_size=12,
                point_size=1,
                shape_color=(0.06, 0.12, 0.22),
                shape_opacity=0.75,
                text_color="white",
                always_visible=True,
                name="labels",
                show_points=False,
            )

    def _update_panels(self) -> None:
        lines = panel_lines(
            list(self.source.robots.values()),
            fallen=len(self.fallen),
            failures_seen=self.tally.failures_seen,
            lessons_seen=self.tally.lessons_seen,
        )
        for panel in self.scene.panels:
            self.hall.set_panel_text(panel.id, panel_text(panel.shows, lines))

    # -- selection and the joint panel -----------------------------------------

    def select(self, robot_id: str | None) -> None:
        """Select a robot: its joint history and limits appear in a side panel."""
        self.panel.select(robot_id, self._joints.get(robot_id) if robot_id else None)

    @property
    def selected(self) -> str | None:
        """The selected robot, if any."""
        return self.panel.selected

    def pick_cell(self, cell_id: int) -> None:
        """Select the robot that owns a picked cell of the robot mesh."""
        self.select(self.robots.robot_of_cell(cell_id))

    # -- LiDAR ------------------------------------------------------------------

    def show_lidar(self, visible: bool) -> None:
        """Toggle a simulated LiDAR scan (Open3D raycasting) of the current world."""
        if not visible:
            if self.lidar_actor is not None:
                self.plotter.remove_actor(self.lidar_actor)
                self.lidar_actor = None
            return
        from viz.lidar import LidarScanner, LidarSpec

        sensors = [s for s in self.scene.sensors if s.kind == "lidar"]
        if not sensors:
            log.warning("the scene has no LiDAR sensor")
            return
        scan = LidarScanner(self.world, LidarSpec.from_sensor(sensors[0])).scan()
        cloud = pv.PolyData(scan.points_m.astype(np.float64))
        cloud.point_data["range m"] = scan.ranges_m
        self.lidar_actor = self.plotter.add_mesh(
            cloud,
            scalars="range m",
            cmap="cool",
            point_size=3,
            render_points_as_spheres=False,
            show_scalar_bar=False,
            name="lidar",
        )

    # -- output -----------------------------------------------------------------

    def screenshot(self, path: Path) -> Path:
        """Render one frame and write it as PNG."""
        self.update()
        self.plotter.render()
        self.plotter.screenshot(str(path))
        return path

    def record(self, path: Path, seconds: float, *, fps: int = 24) -> int:
        """Render ``seconds`` of the live hall to an MP4 (off screen); returns frames written."""
        self.plotter.open_movie(str(path), framerate=fps, quality=6, macro_block_size=1)
        frames = max(1, round(seconds * fps))
        start = time.monotonic()
        try:
            for frame in range(frames):
                due = start + frame / fps
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pace against the wall clock: the video is real time
                self.update()
                self.plotter.write_frame()
        finally:
            self.plotter.mwriter.close()
        return frames

    def close(self) -> None:
        """Close the window and the world."""
        self.plotter.close()
        self.world.close()
        self.source.close()
