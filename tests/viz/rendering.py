"""Off-screen rendering helpers for the viewer's tests: a plotter for a robot batch, a
frame's pixels, where a world point lands on screen, a robot's points."""

from __future__ import annotations

import numpy as np
import pyvista as pv

from viz.robot_mesh import RobotBatch

pv.OFF_SCREEN = True

BACKGROUND = (0, 0, 80)
WINDOW = (640, 480)


def points_of(batch: RobotBatch, robot_id: str, link: int | None = None) -> np.ndarray:
    mask = batch.mesh.point_data["robot"] == batch.robot_ids.index(robot_id)
    if link is not None:
        mask &= batch.mesh.point_data["link"] == link
    return np.array(batch.mesh.points[mask], dtype=np.float64)


def plotter_for(batch: RobotBatch) -> pv.Plotter:
    plotter = pv.Plotter(off_screen=True, window_size=list(WINDOW), lighting="three lights")
    plotter.disable_anti_aliasing()
    plotter.render_window.SetMultiSamples(0)  # no blending of edges with the background
    plotter.set_background([c / 255 for c in BACKGROUND])
    plotter.add_mesh(batch.mesh, scalars="rgb", rgb=True)
    return plotter


def frame(plotter: pv.Plotter) -> np.ndarray:
    plotter.render_window.Render()  # plotter.render() waits for show(); render directly
    return np.asarray(plotter.screenshot(), dtype=np.int32)


def pixel_of(plotter: pv.Plotter, xyz: tuple[float, float, float]) -> tuple[int, int]:
    renderer = plotter.renderer
    renderer.SetWorldPoint(*xyz, 1.0)
    renderer.WorldToDisplay()
    x, y, _ = renderer.GetDisplayPoint()
    return WINDOW[1] - 1 - round(y), round(x)  # image rows run top down


def robot_pixels(image: np.ndarray) -> np.ndarray:
    pixels: np.ndarray = image[np.abs(image - np.asarray(BACKGROUND)).sum(axis=-1) > 30]
    return pixels
