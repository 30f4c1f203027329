"""The hall on a web page: floor, grid, benches and items, hub, sensors, cranes, LED panels.

The meshes are the desktop viewer's (:mod:`viz.hall`), sent once to each browser as viser
scene nodes. The crane's moving parts are nodes of their own, moved when the twin reports
the crane elsewhere; the LED panels carry their live text as labels.
"""

from __future__ import annotations

import logging
from typing import Final

import numpy as np
import numpy.typing as npt
import pyvista as pv
import viser

from twin.world.world import World
from viz.hall import (
    BENCH_RGB,
    FLOOR_RGB,
    GRID_RGB,
    HUB_RGB,
    PANEL_RGB,
    RAIL_RGB,
    SENSOR_RGB,
    _bench_mesh,
    crane_parts,
    crane_rails,
    floor_grid,
    hub_mesh,
    items_mesh,
    panel_frame,
    sensors_mesh,
)

log = logging.getLogger(__name__)

HALL_NODE: Final = "/hall"
_CABLE_RGB: Final = (40, 40, 40)


def rgb8(rgb: tuple[float, float, float]) -> tuple[int, int, int]:
    """A 0..1 colour as 0..255."""
    r, g, b = (round(255 * c) for c in rgb)
    return (r, g, b)


def triangles(mesh: pv.PolyData) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """A pyvista surface as vertices (V, 3) and triangles (F, 3)."""
    tri = mesh.triangulate()
    faces = np.asarray(tri.faces, dtype=np.int64).reshape(-1, 4)[:, 1:]
    return np.asarray(tri.points, dtype=np.float32), faces.astype(np.int32)


def add_mesh(
    scene: viser.SceneApi, name: str, mesh: pv.PolyData, rgb: tuple[float, float, float]
) -> viser.MeshHandle | None:
    """One pyvista mesh as a viser node in one colour; None for an empty mesh."""
    if mesh.n_points == 0:
        return None
    vertices, faces = triangles(mesh)
    return scene.add_mesh_simple(
        name, vertices, faces, color=rgb8(rgb), cast_shadow=False, receive_shadow=False
    )


class WebHall:
    """The hall's nodes in one viser scene scope, and the moving/labelled ones' handles."""

    def __init__(self, scene: viser.SceneApi, world: World) -> None:
        self.scene = scene
        self.world = world
        hall = world.scene
        sx, sy = hall.floor.size
        floor = pv.Plane(center=(sx / 2, sy / 2, 0.0), i_size=sx, j_size=sy)
        add_mesh(scene, f"{HALL_NODE}/floor", floor, FLOOR_RGB)
        grid = floor_grid(hall)
        lines = np.asarray(grid.lines).reshape(-1, 3)[:, 1:]
        segments = np.asarray(grid.points, dtype=np.float32)[lines]
        scene.add_line_segments(
            f"{HALL_NODE}/grid", segments, colors=rgb8(GRID_RGB), thickness=0.02
        )
        if hall.benches:
            benches = pv.merge([_bench_mesh(b) for b in hall.benches])
            add_mesh(scene, f"{HALL_NODE}/benches", benches, BENCH_RGB)
            items = items_mesh(world)
            if items.n_points:
                self._add_items(items)
        add_mesh(scene, f"{HALL_NODE}/hub", hub_mesh(hall), HUB_RGB)
        add_mesh(scene, f"{HALL_NODE}/sensors", sensors_mesh(hall), SENSOR_RGB)
        self.crane_nodes: dict[str, dict[str, viser.MeshHandle]] = {}
        self.cables: dict[str, viser.LineSegmentsHandle] = {}
        for crane in hall.cranes:
            for index, rail in enumerate(crane_rails(crane, sx)):
                add_mesh(scene, f"{HALL_NODE}/crane-{crane.id}/rail{index}", rail, RAIL_RGB)
            nodes = {}
            for part, (mesh, rgb) in crane_parts(crane).items():
                node = add_mesh(scene, f"/cranes/{crane.id}/{part}", mesh, rgb)
                if node is not None:
                    nodes[part] = node
            self.crane_nodes[crane.id] = nodes
            self.cables[crane.id] = scene.add_line_segments(
                f"/cranes/{crane.id}/cable",
                np.zeros((1, 2, 3), dtype=np.float32),
                colors=_CABLE_RGB,
                thickness=0.03,
            )
        self.panel_labels: dict[str, viser.LabelHandle] = {}
        self.panel_text: dict[str, str] = {}
        for panel in hall.panels:
            add_mesh(scene, f"{HALL_NODE}/panel-{panel.id}", panel_frame(panel), PANEL_RGB)
            x, y, z = panel.pose.xyz
            self.panel_labels[panel.id] = scene.add_label(
                f"/panels/{panel.id}",
                "HALL TWIN",
                position=(x, y, z),
                font_size_mode="scene",
                font_scene_height=0.18 * panel.size[1],
                anchor="center-center",
            )
            self.panel_text[panel.id] = "HALL TWIN"
        self.update_cranes()

    def _add_items(self, items: pv.PolyData) -> None:
        vertices, faces = triangles(items)
        colours = np.asarray(items.triangulate().point_data["rgb"])[faces[:, 0]]
        for i, rgb in enumerate(np.unique(colours, axis=0)):
            chosen = faces[np.all(colours == rgb, axis=1)]
            self.scene.add_mesh_simple(
                f"{HALL_NODE}/items{i}",
                vertices,
                chosen,
                color=(int(rgb[0]), int(rgb[1]), int(rgb[2])),
                cast_shadow=False,
                receive_shadow=False,
            )

    def update_cranes(self) -> None:
        """Place the cranes' parts and cables where the kinematic world has them."""
        for crane_id, nodes in self.crane_nodes.items():
            for part, node in nodes.items():
                position, _ = self.world.link_pose(f"crane:{crane_id}/{part}")
                node.position = np.asarray(position, dtype=np.float64)
            trolley = self.world.link_pose(f"crane:{crane_id}/trolley")[0]
            hook = self.world.link_pose(f"crane:{crane_id}/hook")[0]
            self.cables[crane_id].points = np.array([[trolley, hook]], dtype=np.float32)

    def set_panel_text(self, panel_id: str, text: str) -> None:
        """Show ``text`` on an LED panel (sent only when it changed)."""
        if self.panel_text.get(panel_id) != text:
            self.panel_text[panel_id] = text
            self.panel_labels[panel_id].text = text
