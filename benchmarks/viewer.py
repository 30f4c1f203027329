"""Viewer frame rate: the real viewer (hall, batched robots, labels, flows, panels), off screen.

Usage::

    python benchmarks/viewer.py [--robots N] [--size 1280x720] [--seconds 5] [--mesh-models]
                                 [--json]

What it does, all in one run:

1. The hall: the default scene (its first N robots; N defaults to all 8), or for N > 8 a
   synthetic hall (YAML text through ``parse_scene``) of N robots cycling ``kestrel_k1``,
   ``orca_h2`` and ``tessel_t3`` on a 2.5 m grid of stations, with a row of benches.
2. :class:`viz.viewer.HallViewer` off screen at the given size, exactly as ``twin view``
   draws it, fed by a static source whose views change every frame.
3. Each frame: every robot's joints move (a sine per joint) and carry efforts and a data
   rate, ``HallViewer.update`` (pose the kinematic world, the robot batch, colours,
   labels, flows, panels), ``plotter.render()``, then a ``glFinish``
   (``WaitForCompletion``) so the frame is really drawn before the clock stops.
4. Baseline, in the same run at the same size and camera: the same triangles (every
   actor's surface) as one merged static actor in a bare VTK render window with the same
   lights, re-rendered with no updates (``bare_vtk_fps``).

With ``--mesh-models``: a mesh-based humanoid package is drafted from a URDF whose every link
is STL/DAE meshes (:mod:`benchmarks.mesh_models`), its cold load is timed (package, PyBullet,
viewer meshes), and the loop runs twice on the same synthetic grid of N robots (default 8):
first all ``kestrel_k1`` (the same kinematics, primitive shapes), then all the mesh model;
``fps_vs_built_in`` is their ratio, each run with its own ``bare_vtk_fps``.

Figures: ``fps`` is the median of frames completed per 1-second window; ``frame_ms_*``
the whole frame, ``state_ms_p50`` the viewer's update alone, ``render_ms_p50`` render
plus finish.
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
from viz.mesh_assets import TRIANGLES_PER_ROBOT
from viz.sources import StaticSource
from viz.viewer import HallViewer

MODELS: Final = ("kestrel_k1", "orca_h2", "tessel_t3")
STATION_SPACING_M: Final = 2.5
JOINT_AMPLITUDE_RAD: Final = 0.15
JOINT_FREQUENCY_HZ: Final = 0.5
WARMUP_FRAMES: Final = 5
BENCH_RGB: Final = (0.55, 0.45, 0.35)
HUB_RGB: Final = (0.25, 0.35, 0.55)
FLOOR_RGB: Final = (0.62, 0.63, 0.65)


# -- the hall -------------------------------------------------------------------------


def hall_yaml(robots: int, models: Sequence[str] = MODELS) -> str:
    """Scene YAML: ``robots`` robots cycling ``models`` on a grid, benches along one wall."""
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
        model = get_model(models[i % len(models)])
        lines.append(
            f"  - {{id: R{i:03d}, model: {model.name}, manufacturer: {model.manufacturer}, "
            f"station: S{i:03d}, task: idle}}"
        )
    return "\n".join(lines) + "\n"


def build_scene(robots: int) -> tuple[Scene, list[str]]:
    """The scene and the ids of the robots to draw."""
    scene = load_scene()
    if robots <= len(scene.robots):  # the default hall, all its robots drawn
        return scene, [r.id for r in scene.robots]
    scene = parse_scene(hall_yaml(robots), "<synthetic viewer hall>")
    return scene, [r.id for r in scene.robots]


class Motion:
    """A sine per joint (clipped to its limits) for every robot, written into the views."""

    def __init__(self, source: StaticSource, robot_ids: Sequence[str]) -> None:
        self.source = source
        self.plan: list[tuple[str, np.ndarray[Any, Any], np.ndarray[Any, Any]]] = []
        for i, robot_id in enumerate(robot_ids):
            view = source.robots[robot_id]
            model = get_model(view.model)
            joints = [model.joint(name) for name in view.joint_names]
            limits = np.array([[j.lower for j in joints], [j.upper for j in joints]])
            phase = np.arange(len(joints)) * 0.7 + i * 1.3
            self.plan.append((robot_id, phase, limits))

    def apply(self, t_s: float) -> None:
        """Every joint where its sine is at ``t_s``; efforts follow, for the colours."""
        for robot_id, phase, limits in self.plan:
            values = JOINT_AMPLITUDE_RAD * np.sin(2 * math.pi * JOINT_FREQUENCY_HZ * t_s + phase)
            view = self.source.robots[robot_id]
            view.positions = np.clip(values, limits[0], limits[1]).tolist()
            view.efforts = (20.0 * values).tolist()
            view.in_bytes_per_s = 100_000.0


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


def run_viewer(scene: Scene, robot_ids: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """The measured loop over the real viewer (hall, robots, labels, flows, panels)."""
    source = StaticSource(scene)
    viewer = HallViewer(
        scene,
        source,
        off_screen=True,
        window_size=args.size,
        triangles_per_robot=args.mesh_triangles,
    )
    motion = Motion(source, robot_ids)
    plotter = viewer.plotter
    plotter.show(auto_close=False)  # before show(), render() draws nothing
    state_s, render_s, frame_s, ends = [], [], [], []
    frame = 0
    start = time.perf_counter()
    measure_from = None
    while True:
        t0 = time.perf_counter()
        motion.apply(t0 - start)
        viewer.update(now_s=t0 - start)
        t1 = time.perf_counter()
        plotter.render()
        plotter.render_window.WaitForCompletion()
        t2 = time.perf_counter()
        frame += 1
        if frame == WARMUP_FRAMES:
            measure_from = t2
        elif measure_from is not None:
            state_s.append(t1 - t0)
            render_s.append(t2 - t1)
            frame_s.append(t2 - t0)
            ends.append(t2)
            if t2 - measure_from >= args.seconds:
                break
    assert measure_from is not None
    meshes = []
    for actor in plotter.renderer.GetActors():
        data = actor.GetMapper().GetInput() if actor.GetMapper() is not None else None
        if isinstance(data, pv.PolyData) or data is not None:
            mesh = pv.wrap(data)
            if isinstance(mesh, pv.PolyData) and mesh.n_cells:
                meshes.append(mesh.extract_surface().triangulate().copy())
    everything = pv.merge(meshes)
    result = {
        "robots": len(robot_ids),
        "actors": plotter.renderer.GetActors().GetNumberOfItems(),
        "triangles": int(everything.n_cells),
        "robot_triangles": int(viewer.robots.mesh.n_cells),
        "fps": windowed_fps(ends, measure_from),
        "frames": len(frame_s),
        "frame_ms_p50": percentile_ms(frame_s, 50),
        "frame_ms_p99": percentile_ms(frame_s, 99),
        "state_ms_p50": percentile_ms(state_s, 50),
        "render_ms_p50": percentile_ms(render_s, 50),
    }
    result["bare_vtk_fps"] = bare_vtk_fps(everything, plotter.renderer, args)
    viewer.close()
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
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--mesh-models", action="store_true", help="mesh-based robots against built-in ones"
    )
    parser.add_argument(
        "--mesh-triangles",
        type=int,
        default=TRIANGLES_PER_ROBOT,
        help="triangle budget per robot for mesh visuals (twin view --mesh-triangles)",
    )
    args = parser.parse_args(argv)
    if args.robots is not None and args.robots < 1:
        parser.error("--robots must be at least 1")
    if not args.seconds > 0:
        parser.error("--seconds must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Build the hall, run the loop and the baseline, print the result."""
    args = parse_args(argv)
    pv.OFF_SCREEN = True
    if args.mesh_models:
        return mesh_models(args)
    scene, robot_ids = build_scene(args.robots or len(load_scene().robots))
    figures = run_viewer(scene, robot_ids, args)
    result = {
        "benchmark": "viewer",
        "scene": scene.name,
        "size": f"{args.size[0]}x{args.size[1]}",
        "seconds": args.seconds,
        "anti_aliasing": "none",
        "lighting": "three lights",
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
            f"state {result['state_ms_p50']} ms, render {result['render_ms_p50']} ms); "
            f"bare VTK {result['bare_vtk_fps']} fps\n"
        )
    return 0


def mesh_models(args: argparse.Namespace) -> int:
    """``--mesh-models``: the load time of a mesh model, and the viewer with N of them beside
    the same hall of built-in robots."""
    import tempfile

    from benchmarks.mesh_models import LIKE_FOR_LIKE, MESH_MODEL, install_mesh_model, load_times

    robots = args.robots or 8
    with tempfile.TemporaryDirectory(prefix="viewer-bench-") as tmp:
        root = install_mesh_model(Path(tmp))
        load = load_times(root, args.mesh_triangles)
        runs = {}
        for name in (LIKE_FOR_LIKE, MESH_MODEL):
            scene = parse_scene(hall_yaml(robots, (name,)), f"<{robots} x {name}>")
            runs[name] = run_viewer(scene, [r.id for r in scene.robots], args)
    built_in, mesh = runs[LIKE_FOR_LIKE], runs[MESH_MODEL]
    result = {
        "benchmark": "viewer --mesh-models",
        "size": f"{args.size[0]}x{args.size[1]}",
        "seconds": args.seconds,
        "robots": robots,
        "mesh_triangles_per_robot": args.mesh_triangles,
        "model_load": load,
        "mesh_model": {"model": MESH_MODEL, **mesh},
        "built_in": {"model": LIKE_FOR_LIKE, **built_in},
        "fps_vs_built_in": round(mesh["fps"] / built_in["fps"], 3) if built_in["fps"] else None,
        "targets": {"fps_vs_built_in_min": 0.85, "model_load_s_max": 2.0},
        "machine": machine_info(),
    }
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stdout.write(
            f"viewer, {robots} mesh robots ({mesh['robot_triangles']:,} robot triangles): "
            f"{mesh['fps']} fps (bare VTK {mesh['bare_vtk_fps']}); the same hall of "
            f"{LIKE_FOR_LIKE}: {built_in['fps']} fps (bare VTK {built_in['bare_vtk_fps']}); "
            f"ratio {result['fps_vs_built_in']}; model load {load['total_s']} s "
            f"({load['links']} links)\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
