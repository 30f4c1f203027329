"""The hall's fixed and moving furniture as PyVista meshes: floor, benches, hub, crane, panels.

Static geometry is merged into a few actors (one per material); the crane's moving
parts are one actor each, placed every frame from the viewer's kinematic world; the
LED panels show live text as 3D text meshes rebuilt only when the text changes.
Colours: a cool blue-and-white industrial look.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import pyvista as pv
from numpy.typing import NDArray

from scenes.model import Bench, Crane, Panel, Scene
from twin.world.world import World

FLOOR_RGB: Final = (0.86, 0.89, 0.93)
GRID_RGB: Final = (0.70, 0.76, 0.84)
BENCH_RGB: Final = (0.62, 0.67, 0.74)
HUB_RGB: Final = (0.10, 0.38, 0.85)
PANEL_RGB: Final = (0.04, 0.06, 0.10)
LED_RGB: Final = (0.35, 0.85, 1.0)
RAIL_RGB: Final = (0.36, 0.40, 0.46)
CRANE_RGB: Final = (0.98, 0.74, 0.12)
SENSOR_RGB: Final = (0.95, 0.95, 1.0)
ITEM_RGB: Final = {
    "torque_wrench": (0.85, 0.12, 0.12),
    "sensor_array": (0.12, 0.65, 0.35),
    "precision_component": (0.90, 0.78, 0.30),
    "fixture": (0.30, 0.32, 0.38),
    "part_bin": (0.20, 0.42, 0.85),
}
_GRID_STEP_M: Final = 1.0
_TOP_M: Final = 0.05
_LEG_M: Final = 0.06
_TEXT_HEIGHT_FRACTION: Final = 0.22


def _rotation_z(yaw_rad: float) -> NDArray[np.float64]:
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _placed(mesh: pv.PolyData, xyz: Sequence[float], yaw_rad: float) -> pv.PolyData:
    matrix = np.eye(4)
    matrix[:3, :3] = _rotation_z(yaw_rad)
    matrix[:3, 3] = xyz
    return mesh.transform(matrix, inplace=False)


def _bench_mesh(bench: Bench) -> pv.PolyData:
    length, depth = bench.size
    height = bench.height
    parts = [pv.Box((-length / 2, length / 2, -depth / 2, depth / 2, height - _TOP_M, height))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            x = sx * (length / 2 - _LEG_M)
            y = sy * (depth / 2 - _LEG_M)
            h = _LEG_M / 2
            parts.append(pv.Box((x - h, x + h, y - h, y + h, 0.0, height - _TOP_M)))
    merged = pv.merge(parts)
    return _placed(merged, bench.pose.xyz, bench.pose.yaw_rad)


def floor_grid(scene: Scene) -> pv.PolyData:
    """Thin grid lines on the floor every metre (as one line mesh)."""
    sx, sy = scene.floor.size
    lines = []
    for x in np.arange(0.0, sx + 1e-9, _GRID_STEP_M):
        lines.append(pv.Line((x, 0.0, 0.002), (x, sy, 0.002)))
    for y in np.arange(0.0, sy + 1e-9, _GRID_STEP_M):
        lines.append(pv.Line((0.0, y, 0.002), (sx, y, 0.002)))
    return pv.merge(lines)


@dataclass
class HallDrawing:
    """The actors of the hall (everything but the robots and the flows)."""

    plotter: pv.Plotter
    world: World
    crane_actors: dict[str, dict[str, pv.Actor]] = field(default_factory=dict)
    panel_text: dict[str, str] = field(default_factory=dict)
    panel_actors: dict[str, pv.Actor] = field(default_factory=dict)
    cable_meshes: dict[str, pv.PolyData] = field(default_factory=dict)

    @classmethod
    def build(cls, plotter: pv.Plotter, world: World) -> HallDrawing:
        """Add the hall's actors to ``plotter``."""
        drawing = cls(plotter, world)
        scene = world.scene
        sx, sy = scene.floor.size
        metal = {"specular": 0.6, "specular_power": 30.0, "ambient": 0.15}
        plotter.add_mesh(
            pv.Plane(center=(sx / 2, sy / 2, 0.0), i_size=sx, j_size=sy),
            color=FLOOR_RGB,
            ambient=0.35,
            diffuse=0.7,
            specular=0.05,
            name="floor",
        )
        plotter.add_mesh(floor_grid(scene), color=GRID_RGB, line_width=1, name="grid")
        if scene.benches:
            benches = pv.merge([_bench_mesh(b) for b in scene.benches])
            plotter.add_mesh(benches, color=BENCH_RGB, name="benches", **metal)
            items = drawing._items_mesh()
            if items.n_points:
                plotter.add_mesh(items, scalars="rgb", rgb=True, name="items")
        plotter.add_mesh(
            hub_mesh(scene),
            color=HUB_RGB,
            name="hub",
            **metal,
        )
        drawing._build_cranes()
        drawing._build_panels()
        drawing._build_sensors()
        return drawing

    def _items_mesh(self) -> pv.PolyData:
        return items_mesh(self.world)

    def _build_cranes(self) -> None:
        for crane in self.world.scene.cranes:
            length = self.world.scene.floor.size[0]
            for index, rail in enumerate(crane_rails(crane, length)):
                self.plotter.add_mesh(rail, color=RAIL_RGB, name=f"crane:{crane.id}/rail{index}")
            actors = {}
            for part, (mesh, rgb) in crane_parts(crane).items():
                actors[part] = self.plotter.add_mesh(
                    mesh,
                    color=rgb,
                    specular=0.6,
                    specular_power=30.0,
                    ambient=0.2,
                    name=f"crane:{crane.id}/{part}",
                )
            cable = pv.Line((0, 0, 0), (0, 0, 1))
            self.cable_meshes[crane.id] = cable
            self.plotter.add_mesh(
                cable, color=(0.15, 0.15, 0.15), line_width=2, name=f"crane:{crane.id}/cable"
            )
            self.crane_actors[crane.id] = actors
        self.update_cranes()

    def update_cranes(self) -> None:
        """Place the crane parts where the viewer's world has them."""
        for crane_id, actors in self.crane_actors.items():
            for part, actor in actors.items():
                position, _ = self.world.link_pose(f"crane:{crane_id}/{part}")
                matrix = np.eye(4)
                matrix[:3, 3] = position
                actor.user_matrix = matrix
            trolley = self.world.link_pose(f"crane:{crane_id}/trolley")[0]
            hook = self.world.link_pose(f"crane:{crane_id}/hook")[0]
            cable = self.cable_meshes[crane_id]
            cable.points = np.array([trolley, hook], dtype=np.float32)

    def _build_panels(self) -> None:
        for panel in self.world.scene.panels:
            self.plotter.add_mesh(panel_frame(panel), color=PANEL_RGB, name=f"panel:{panel.id}")
            self.set_panel_text(panel.id, "HALL TWIN")

    def set_panel_text(self, panel_id: str, text: str) -> None:
        """Show ``text`` on an LED panel (rebuilt only when it changed)."""
        if self.panel_text.get(panel_id) == text:
            return
        panel = next(p for p in self.world.scene.panels if p.id == panel_id)
        width, height = panel.size
        lines = text.splitlines() or [""]
        line_h = height * _TEXT_HEIGHT_FRACTION
        meshes = []
        for row, line in enumerate(lines[:3]):
            if not line:
                continue
            mesh = pv.Text3D(line, depth=0.01, height=line_h)
            if mesh.n_points == 0:
                continue
            bounds = mesh.bounds
            scale = min(1.0, (width * 0.9) / max(1e-6, bounds[1] - bounds[0]))
            mesh.scale(scale, inplace=True)
            bounds = mesh.bounds
            # text is drawn in its x-y plane; stand it up facing the panel's heading
            mesh.translate(
                (-(bounds[0] + bounds[1]) / 2, -(bounds[2] + bounds[3]) / 2, 0), inplace=True
            )
            mesh.translate(
                (0, height / 2 - line_h * (row + 1) - 0.05 * height * row, 0), inplace=True
            )
            meshes.append(mesh)
        self.panel_text[panel_id] = text
        if not meshes:
            return
        merged = pv.merge(meshes)
        # text x -> panel width (its local y), text y -> up, facing +x of the panel
        stand = np.array([[0, 0, 1, 0.05], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
        merged = merged.transform(stand, inplace=False)
        placed = _placed(merged, panel.pose.xyz, panel.pose.yaw_rad)
        self.panel_actors[panel_id] = self.plotter.add_mesh(
            placed, color=LED_RGB, lighting=False, name=f"panel-text:{panel_id}"
        )

    def _build_sensors(self) -> None:
        sensors = sensors_mesh(self.world.scene)
        if sensors.n_points:
            self.plotter.add_mesh(sensors, color=SENSOR_RGB, name="sensors")


def sensors_mesh(scene: Scene) -> pv.PolyData:
    """Every camera (a cone along its view) and LiDAR (a puck) as one mesh."""
    parts = []
    for sensor in scene.sensors:
        if sensor.kind == "lidar":
            parts.append(
                pv.Cylinder(center=sensor.pose.xyz, direction=(0, 0, 1), radius=0.08, height=0.12)
            )
        else:
            _roll, pitch, yaw = sensor.pose.euler_rad
            direction = (
                math.cos(pitch) * math.cos(yaw),
                math.cos(pitch) * math.sin(yaw),
                -math.sin(pitch),
            )
            parts.append(
                pv.Cone(center=sensor.pose.xyz, direction=direction, height=0.25, radius=0.1)
            )
    return pv.merge(parts) if parts else pv.PolyData()


def hub_mesh(scene: Scene) -> pv.PolyData:
    """The data hub: a box standing on the floor."""
    hub = scene.hub
    sx, sy, sz = hub.size
    box = pv.Box((-sx / 2, sx / 2, -sy / 2, sy / 2, 0, sz))
    return _placed(box, hub.pose.xyz, hub.pose.yaw_rad)


def items_mesh(world: World) -> pv.PolyData:
    """Every bench item as a box where the world has it, with point data ``"rgb"`` by kind."""
    parts = []
    for bench in world.scene.benches:
        for item in bench.items:
            pose = world.link_pose(f"item:{item.id}")
            ix, iy, iz = item.size
            box = pv.Box((-ix / 2, ix / 2, -iy / 2, iy / 2, -iz / 2, iz / 2))
            yaw = math.atan2(
                2 * (pose[1][3] * pose[1][2] + pose[1][0] * pose[1][1]),
                1 - 2 * (pose[1][1] ** 2 + pose[1][2] ** 2),
            )
            placed = _placed(box, pose[0], yaw)
            rgb = np.array(ITEM_RGB[item.kind]) * 255
            placed.point_data["rgb"] = np.tile(rgb.astype(np.uint8), (placed.n_points, 1))
            parts.append(placed)
    return pv.merge(parts) if parts else pv.PolyData()


def crane_rails(crane: Crane, floor_length_m: float) -> list[pv.PolyData]:
    """A crane's two runway rails along the hall's length."""
    top = crane.rail_height
    return [pv.Box((0.0, floor_length_m, y - 0.2, y + 0.2, top - 0.4, top)) for y in crane.rail_y]


def crane_parts(crane: Crane) -> dict[str, tuple[pv.PolyData, tuple[float, float, float]]]:
    """A crane's moving parts (bridge, trolley, hook, load) in their own frames, and colours;
    each is placed at its link's position in the world (``crane:ID/PART``)."""
    span = abs(crane.rail_y[1] - crane.rail_y[0]) + 0.4
    parts: dict[str, tuple[pv.PolyData, tuple[float, float, float]]] = {
        "bridge": (pv.Box((-0.3, 0.3, -span / 2, span / 2, -0.3, 0.3)), CRANE_RGB),
        "trolley": (pv.Box((-0.7, 0.7, -0.6, 0.6, -0.25, 0.25)), (0.92, 0.55, 0.10)),
        "hook": (pv.Box((-0.15, 0.15, -0.15, 0.15, -0.4, 0.0)), (0.2, 0.2, 0.22)),
    }
    if crane.load is not None:
        lx, ly, lz = crane.load.size
        parts["load"] = (
            pv.Box((-lx / 2, lx / 2, -ly / 2, ly / 2, -lz / 2, lz / 2)),
            (0.30, 0.45, 0.62),
        )
    return parts


def panel_frame(panel: Panel) -> pv.PolyData:
    """An LED panel's dark frame, facing +x of its pose."""
    width, height = panel.size
    return _placed(
        pv.Box((-0.04, 0.04, -width / 2, width / 2, -height / 2, height / 2)),
        panel.pose.xyz,
        panel.pose.yaw_rad,
    )
