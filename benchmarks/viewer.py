"""Viewer frame rate: every robot as one posed mesh (RobotBatch) in a static hall, off screen.

Usage::

    python benchmarks/viewer.py [--robots N] [--size 1280x720] [--seconds 5]
                                [--resolution 12] [--lighting light-kit|headlight] [--json]

What it does, all in one run:

1. The hall: the default scene (its first N robots; N defaults to all 8), or for N > 8 a
   synthetic hall (YAML text through ``parse_scene``) of N robots cycling ``kestrel_k1``,
   ``orca_h2`` and ``tessel_t3`` on a 2.5 m grid of stations, with a row of benches.
2. A PyVista plotter, off screen at the given size, multi-sampling off (MSAA costs ~30 ms a
   frame at 1280x720 on llvmpipe), PyVista's light kit (or one headlight): the floor, the
   benches and the hub as three static actors, and the robots as ONE
   :class:`~viz.robot_mesh.RobotBatch` actor coloured by its ``"rgb"`` array.
3. Each frame: every robot's joints move a little (a sine per joint, through
   ``World.set_joint_positions``), ``RobotBatch.update()``, ``plotter.render()``, then a
   ``glFinish`` (``WaitForCompletion``) so the frame is really drawn before the clock stops.
4. Baseline, in the same run at the same size and camera: the same triangles (robots and
   hall) as one merged static actor in a bare VTK render window with the same lights,
   re-rendered with no updates (``bare_vtk_fps``).

Figures: ``fps`` is the median of frames completed per 1-second window; ``frame_ms_*``
the whole frame, ``update_ms_p50`` ``RobotBatch.update`` alone, ``render_ms_p50`` render
plus finish, ``joints_ms_p50`` setting the joints in PyBullet.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import pyvista as pv

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import machine_info
from robots import get_model
from scenes import load_scene, parse_scene
from scenes.model import Scene
from twin.world import World
from viz.robot_mesh import RobotBatch

MODELS: Final = ("kestrel_k1", "orca_h2", "tessel_t3")
STATION_SPACING_M: Final = 2.5
JOINT_AMPLITUDE_RAD: Final = 0.15
JOINT_FREQUENCY_HZ: Final = 0.5
WARMUP_FRAMES: Final = 5
BENCH_RGB: Final = (0.55, 0.45, 0.35)
HUB_RGB: Final = (0.25, 0.35, 0.55)
FLOOR_RGB: Final = (0.62, 0.63, 0.65)


# -- the hall -------------------------------------------------------------------------


def hall_yaml(robots: int) -> str:
    """Scene YAML: ``robots`` robots cycling three models on a grid, benches along one wall."""
    cols = max(1, math.ceil(math.sqrt(robots)))
    rows = max(1, math.ceil(robots / cols))
    margin = 4.0
    size_x = 2 * margin + (cols - 1) * STATION_SPACING_M
    size_y = 2 * margin + (rows - 1) * STATION_SPACING_M
    lines = [
        f"name: Synthetic viewer hall ({robots} robots)",
        "floor:",
        f"  size: [{size_x:g}, {size_y:g}]",
        "  ceiling: 10",
        "hub:",
        "  id: HUB",
        "  pose: {xyz: [1.5, 1.5, 0]}",
        "  size: [1.2, 0.8, 2.0]",
        "benches:",
    ]
    for c in range(cols):
        x = margin + c * STATION_SPACING_M
        lines.append(f"  - {{id: B{c:03d}, pose: {{xyz: [{x:g}, 2.0, 0]}}, size: [1.6, 0.8], ")
        lines[-1] += "height: 0.9}"
    lines.append("stations:")
    for i in range(robots):
        x = margin + (i % cols) * STATION_SPACING_M
        y = margin + (i // cols) * STATION_SPACING_M
        lines.append(f"  - {{id: S{i:03d}, pose: {{xyz: [{x:g}, {y:g}, 0], yaw: -90 deg}}}}")
    lines.append("robots:")
    for i in range(robots):
        model = get_model(MODELS[i % len(MODELS)])
        lines.append(
            f"  - {{id: R{i:03d}, model: {model.name}, manufacturer: {model.manufacturer}, "
            f"station: S{i:03d}, task: idle}}"
        )
    return "\n".join(lines) + "\n"


def build_scene(robots: int) -> tuple[Scene, list[str]]:
    """The scene and the ids of the robots to draw."""
    scene = load_scene()
    if robots <= len(scene.robots):
        return scene, [r.id for r in scene.robots[:robots]]
    scene = parse_scene(hall_yaml(robots), "<synthetic viewer hall>")
    return scene, [r.id for r in scene.robots]


def static_hall(scene: Scene) -> list[tuple[Any, tuple[float, float, float]]]:
    """Floor, benches (merged) and hub as (mesh, colour) pairs."""
    sx, sy = scene.floor.size
    floor = pv.Plane(
        center=(sx / 2, sy / 2, 0.0), i_size=sx, j_size=sy, i_resolution=1, j_resolution=1
    ).triangulate()
    benches = []
    for bench in scene.benches:
        length, depth = bench.size
        box = pv.Box(bounds=(-length / 2, length / 2, -depth / 2, depth / 2, 0.0, bench.height))
        box = box.rotate_z(math.degrees(bench.pose.yaw_rad)).translate(bench.pose.xyz)
        benches.append(box.triangulate())
    hx, hy, hz = (v / 2 for v in scene.hub.size)
    hub = pv.Box(bounds=(-hx, hx, -hy, hy, 0.0, 2 * hz)).translate(scene.hub.pose.xyz)
    parts: list[tuple[Any, tuple[float, float, float]]] = [(floor, FLOOR_RGB)]
    if benches:
        parts.append((pv.merge(benches), BENCH_RGB))
    parts.append((hub.triangulate(), HUB_RGB))
    return parts


def set_camera(camera: Any, scene: Scene) -> None:
    """An overview from above one corner, the whole floor in view."""
    sx, sy = scene.floor.size
    span = max(sx, sy)
    camera.SetFocalPoint(sx / 2, sy / 2, 0.5)
    camera.SetPosition(sx / 2 - 0.5 * span, sy / 2 - 0.9 * span, 0.7 * span)
    camera.SetViewUp(0.0, 0.0, 1.0)
    camera.SetViewAngle(40.0)


# -- motion ---------------------------------------------------------------------------


class Motion:
    """A sine per joint about its zero (clipped to the limits), for every robot."""

    def __init__(self, world: World, robot_ids: Sequence[str]) -> None:
        self.world = world
        self.plan: list[tuple[str, list[str], np.ndarray[Any, Any], np.ndarray[Any, Any]]] = []
        for i, robot_id in enumerate(robot_ids):
            joints = [j for j in world.robots[robot_id].model.joints if j.kind != "spherical"]
            lower = np.array([j.lower for j in joints])
            upper = np.array([j.upper for j in joints])
            phase = np.arange(len(joints)) * 0.7 + i * 1.3
            self.plan.append((robot_id, [j.name for j in joints], phase, np.stack([lower, upper])))

    def apply(self, t_s: float) -> None:
        """Put every joint where its sine is at time ``t_s``."""
        for robot_id, names, phase, limits in self.plan:
            values = JOINT_AMPLITUDE_RAD * np.sin(2 * math.pi * JOINT_FREQUENCY_HZ * t_s + phase)
            values = np.clip(values, limits[0], limits[1])
            self.world.set_joint_positions(robot_id, dict(zip(names, values.tolist(), strict=True)))


# -- measuring ------------------------------------------------------------------------


def windowed_fps(frame_ends_s: Sequence[float], start_s: float) -> float:
    """Median over whole 1-second windows of the frames that ended in each."""
    ends = np.asarray(frame_ends_s) - start_s
    windows = int(ends[-1]) if len(ends) else 0
    if windows < 1:
        return round(len(ends) / max(float(ends[-1]), 1e-9), 1) if len(ends) else 0.0
    counts = np.histogram(ends, bins=windows, range=(0.0, float(windows)))[0]
    return round(float(np.median(counts)), 1)


def percentile_ms(values_s: Sequence[float], q: float) -> float:
    """A percentile of durations given in seconds, in milliseconds."""
    return round(float(np.percentile(np.asarray(values_s), q)) * 1e3, 3)


def run_viewer(
    world: World, scene: Scene, robot_ids: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """The measured loop; returns the figures and the plotter's merged triangles."""
    batch = RobotBatch(world, robot_ids=robot_ids, resolution=args.resolution)
    motion = Motion(world, robot_ids)
    lighting = "light kit" if args.lighting == "light-kit" else "none"
    plotter = pv.Plotter(off_screen=True, window_size=list(args.size), lighting=lighting)
    if args.lighting == "headlight":
        plotter.add_light(pv.Light(light_type="headlight"))
    plotter.disable_anti_aliasing()
    plotter.render_window.SetMultiSamples(0)
    hall = static_hall(scene)
    for mesh, colour in hall:
        plotter.add_mesh(mesh, color=colour)
    plotter.add_mesh(batch.mesh, scalars="rgb", rgb=True, show_scalar_bar=False)
    set_camera(plotter.camera, scene)
    plotter.reset_camera_clipping_range()
    plotter.show(auto_close=False)
    joints_s, update_s, render_s, frame_s, ends = [], [], [], [], []
    frame = 0
    start = time.perf_counter()
    measure_from = None
    while True:
        t0 = time.perf_counter()
        motion.apply(t0 - start)
        t1 = time.perf_counter()
        batch.update()
        t2 = time.perf_counter()
        plotter.render()
        plotter.render_window.WaitForCompletion()
        t3 = time.perf_counter()
        frame += 1
        if frame == WARMUP_FRAMES:
            measure_from = t3
        elif measure_from is not None:
            joints_s.append(t1 - t0)
            update_s.append(t2 - t1)
            render_s.append(t3 - t2)
            frame_s.append(t3 - t0)
            ends.append(t3)
            if t3 - measure_from >= args.seconds:
                break
    assert measure_from is not None
    static = pv.merge([mesh.copy() for mesh, _ in hall])
    static.point_data["rgb"] = np.concatenate(
        [np.tile(np.round(np.asarray(c) * 255), (m.n_points, 1)) for m, c in hall]
    ).astype(np.uint8)
    robots = batch.mesh.copy()
    everything = pv.merge([static, robots])
    result = {
        "robots": len(robot_ids),
        "actors": plotter.renderer.GetActors().GetNumberOfItems(),
        "triangles": int(everything.n_cells),
        "robot_triangles": int(batch.mesh.n_cells),
        "fps": windowed_fps(ends, measure_from),
        "frames": len(frame_s),
        "frame_ms_p50": percentile_ms(frame_s, 50),
        "frame_ms_p99": percentile_ms(frame_s, 99),
        "update_ms_p50": percentile_ms(update_s, 50),
        "render_ms_p50": percentile_ms(render_s, 50),
        "joints_ms_p50": percentile_ms(joints_s, 50),
    }
    result["bare_vtk_fps"] = bare_vtk_fps(everything, plotter.renderer, args)
    plotter.close()
    return result


def bare_vtk_fps(mesh: Any, like: Any, args: argparse.Namespace) -> float:
    """Frames per second of the same triangles as one static actor in a bare VTK window,
    with the camera and lights of the renderer ``like``."""
    from vtkmodules.vtkRenderingCore import (
        vtkActor,
        vtkLight,
        vtkPolyDataMapper,
        vtkRenderer,
        vtkRenderWindow,
    )

    mapper = vtkPolyDataMapper()
    mapper.SetInputData(mesh)
    mapper.SetColorModeToDirectScalars()
    mapper.SetScalarModeToUsePointFieldData()
    mapper.SelectColorArray("rgb")
    mapper.ScalarVisibilityOn()
    actor = vtkActor()
    actor.SetMapper(mapper)
    renderer = vtkRenderer()
    renderer.AddActor(actor)
    renderer.GetActiveCamera().DeepCopy(like.GetActiveCamera())
    renderer.AutomaticLightCreationOff()
    lights = like.GetLights()
    lights.InitTraversal()
    for _ in range(lights.GetNumberOfItems()):
        light = vtkLight()
        light.DeepCopy(lights.GetNextItem())
        renderer.AddLight(light)
    renderer.ResetCameraClippingRange()
    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetMultiSamples(0)
    window.SetSize(*args.size)
    window.AddRenderer(renderer)
    for _ in range(WARMUP_FRAMES):
        window.Render()
    window.WaitForCompletion()
    ends: list[float] = []
    start = time.perf_counter()
    while not ends or ends[-1] - start < args.seconds:
        window.Render()
        window.WaitForCompletion()
        ends.append(time.perf_counter())
    window.Finalize()
    return windowed_fps(ends, start)


# -- command line ---------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> (1280, 720)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected WIDTHxHEIGHT") from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError(f"size {text!r}: at least 16x16")
    return width, height


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--robots", type=int, default=None, help="robots (default: the hall's 8)")
    parser.add_argument("--size", type=parse_size, default=(1280, 720), help="WIDTHxHEIGHT")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window (s)")
    parser.add_argument("--resolution", type=int, default=12, help="segments around round shapes")
    parser.add_argument(
        "--lighting",
        choices=("light-kit", "headlight"),
        default="light-kit",
        help="PyVista's default five-light kit, or one headlight (cheaper on a CPU renderer)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.robots is not None and args.robots < 1:
        parser.error("--robots must be at least 1")
    if not args.seconds > 0:
        parser.error("--seconds must be positive")
    if args.resolution < 3:
        parser.error("--resolution must be at least 3")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Build the hall, run the loop and the baseline, print the result."""
    args = parse_args(argv)
    pv.OFF_SCREEN = True
    scene, robot_ids = build_scene(args.robots or len(load_scene().robots))
    with World(scene) as world:
        figures = run_viewer(world, scene, robot_ids, args)
    result = {
        "benchmark": "viewer",
        "scene": scene.name,
        "size": f"{args.size[0]}x{args.size[1]}",
        "seconds": args.seconds,
        "resolution": args.resolution,
        "anti_aliasing": "none",
        "lighting": args.lighting,
        **figures,
        "machine": machine_info(),
    }
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stdout.write(
            f"viewer: {result['robots']} robots, {result['triangles']:,} triangles, "
            f"{result['actors']} actors at {result['size']}: {result['fps']} fps "
            f"(frame p50 {result['frame_ms_p50']} ms, p99 {result['frame_ms_p99']} ms; "
            f"update {result['update_ms_p50']} ms, render {result['render_ms_p50']} ms, "
            f"joints {result['joints_ms_p50']} ms); bare VTK {result['bare_vtk_fps']} fps\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
