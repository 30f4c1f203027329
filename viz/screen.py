"""Screen geometry helpers for the viewer: sizes, and where world points land on screen."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from viz.viewer import HallViewer


def parse_size(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720)."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise ValueError(f"size {text!r} is not WIDTHxHEIGHT, e.g. 1280x720")
    return int(width), int(height)


def robots_on_screen(viewer: HallViewer) -> dict[str, tuple[int, int]]:
    """Where each robot's chest is on screen, in window pixels from the top-left."""
    renderer = viewer.plotter.renderer
    height = viewer.plotter.window_size[1]
    out: dict[str, tuple[int, int]] = {}
    for robot_id in viewer.robots.robot_ids:
        x, y, z = viewer.robots.head_position(robot_id)
        renderer.SetWorldPoint(x, y, z - 0.5, 1.0)
        renderer.WorldToDisplay()
        dx, dy, _ = renderer.GetDisplayPoint()
        out[robot_id] = (round(dx), round(height - dy))
    return out


def world_to_pixel(viewer: HallViewer, point: Sequence[float]) -> tuple[int, int]:
    """A world point's pixel (column, row from the top) in the last render."""
    renderer = viewer.plotter.renderer
    renderer.SetWorldPoint(point[0], point[1], point[2], 1.0)
    renderer.WorldToDisplay()
    dx, dy, _ = renderer.GetDisplayPoint()
    return round(dx), round(viewer.plotter.window_size[1] - dy)
