"""Whole-scene rules that no single value can check on its own.

Each rule returns ``(key path, reason)`` pairs so the loader can point at the line:
unique ids, overlapping workbenches, two robots on one station, references to
stations and benches that do not exist, unknown robot models and manufacturers that
do not match them, poses outside the floor, crane travel outside the rails or the floor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray

from scenes.model import Bench, Crane, Scene

KeyPath = tuple[str | int, ...]
Issue = tuple[KeyPath, str]

_EPS_M = 1e-9


def footprint(
    center_xy: tuple[float, float], size_xy: tuple[float, float], yaw_rad: float
) -> NDArray[np.float64]:
    """Corners (shape (4, 2), hall frame) of a rectangle of ``size_xy`` centred at ``center_xy``."""
    half = np.array(size_xy, dtype=np.float64) / 2.0
    local = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * half
    c, s = math.cos(yaw_rad), math.sin(yaw_rad)
    rot = np.array([[c, -s], [s, c]])
    corners: NDArray[np.float64] = local @ rot.T + np.array(center_xy, dtype=np.float64)
    return corners


def rectangles_overlap(a: NDArray[np.float64], b: NDArray[np.float64]) -> bool:
    """Separating-axis test for two convex quads (corners shape (4, 2)); touching is not overlap."""
    for quad in (a, b):
        for i in range(4):
            edge = quad[(i + 1) % 4] - quad[i]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() <= pb.min() + _EPS_M or pb.max() <= pa.min() + _EPS_M:
                return False
    return True


def _bench_corners(bench: Bench) -> NDArray[np.float64]:
    return footprint((bench.pose.xyz[0], bench.pose.xyz[1]), bench.size, bench.pose.yaw_rad)


def check_scene(scene: Scene) -> list[Issue]:
    """Every whole-scene problem, as (key path, reason) pairs."""
    return [
        *_unique_ids(scene),
        *_inside_floor(scene),
        *_bench_overlaps(scene),
        *_items_on_benches(scene),
        *_stations_and_robots(scene),
        *_cranes(scene),
    ]


def _unique_ids(scene: Scene) -> Iterator[Issue]:
    seen: dict[str, str] = {scene.hub.id: "hub"}
    groups = ("benches", "cranes", "stations", "robots", "panels", "sensors")
    for group in groups:
        for index, entry in enumerate(getattr(scene, group)):
            where = f"{group}[{index}]"
            if entry.id in seen:
                yield (
                    (group, index, "id"),
                    f"duplicate id {entry.id!r} (already used by {seen[entry.id]})",
                )
            else:
                seen[entry.id] = where
    items: dict[str, str] = {}
    for b_index, bench in enumerate(scene.benches):
        for i_index, item in enumerate(bench.items):
            where = f"benches[{b_index}].items[{i_index}]"
            if item.id in items or item.id in seen:
                first = items.get(item.id) or seen[item.id]
                yield (
                    ("benches", b_index, "items", i_index, "id"),
                    (f"duplicate id {item.id!r} (already used by {first})"),
                )
            else:
                items[item.id] = where


def _outside(x: float, y: float, scene: Scene) -> bool:
    sx, sy = scene.floor.size
    return not (-_EPS_M <= x <= sx + _EPS_M and -_EPS_M <= y <= sy + _EPS_M)


def _floor_text(scene: Scene) -> str:
    sx, sy = scene.floor.size
    return f"the floor spans x 0..{sx:g} m, y 0..{sy:g} m"


def _inside_floor(scene: Scene) -> Iterator[Issue]:
    ceiling = scene.floor.ceiling
    posed: list[tuple[KeyPath, tuple[float, float, float], tuple[float, float] | None, float]] = []
    hub = scene.hub
    posed.append((("hub", "pose"), hub.pose.xyz, (hub.size[0], hub.size[1]), hub.pose.yaw_rad))
    for i, bench in enumerate(scene.benches):
        posed.append((("benches", i, "pose"), bench.pose.xyz, bench.size, bench.pose.yaw_rad))
    for i, station in enumerate(scene.stations):
        posed.append((("stations", i, "pose"), station.pose.xyz, None, 0.0))
    for i, panel in enumerate(scene.panels):
        posed.append((("panels", i, "pose"), panel.pose.xyz, None, 0.0))
    for i, sensor in enumerate(scene.sensors):
        posed.append((("sensors", i, "pose"), sensor.pose.xyz, None, 0.0))
    for path, xyz, size, yaw in posed:
        points = (
            footprint((xyz[0], xyz[1]), size, yaw)
            if size is not None
            else np.array([[xyz[0], xyz[1]]])
        )
        if any(_outside(float(px), float(py), scene) for px, py in points):
            what = "footprint reaches" if size is not None else "position"
            yield (
                path,
                (f"{what} outside the floor at ({xyz[0]:g}, {xyz[1]:g}); {_floor_text(scene)}"),
            )
        elif not -_EPS_M <= xyz[2] <= ceiling + _EPS_M:
            yield path, f"height z={xyz[2]:g} m is outside 0..{ceiling:g} m (floor to ceiling)"


def _bench_overlaps(scene: Scene) -> Iterator[Issue]:
    corners = [_bench_corners(b) for b in scene.benches]
    hub = footprint(
        (scene.hub.pose.xyz[0], scene.hub.pose.xyz[1]), scene.hub.size[:2], scene.hub.pose.yaw_rad
    )
    for j, bench in enumerate(scene.benches):
        for i in range(j):
            if rectangles_overlap(corners[i], corners[j]):
                yield (
                    ("benches", j, "pose"),
                    (f"bench {bench.id!r} overlaps bench {scene.benches[i].id!r}"),
                )
        if rectangles_overlap(corners[j], hub):
            yield ("benches", j, "pose"), f"bench {bench.id!r} overlaps the hub {scene.hub.id!r}"


def _items_on_benches(scene: Scene) -> Iterator[Issue]:
    for b, bench in enumerate(scene.benches):
        half_x, half_y = bench.size[0] / 2, bench.size[1] / 2
        for i, item in enumerate(bench.items):
            ox, oy = item.offset
            if (
                abs(ox) + item.size[0] / 2 > half_x + _EPS_M
                or abs(oy) + item.size[1] / 2 > half_y + _EPS_M
            ):
                yield (
                    ("benches", b, "items", i, "offset"),
                    (
                        f"item {item.id!r} hangs over the edge of bench {bench.id!r} "
                        f"(top is {bench.size[0]:g} x {bench.size[1]:g} m)"
                    ),
                )


def _stations_and_robots(scene: Scene) -> Iterator[Issue]:
    from robots import PackageError, UnknownModelError, get_model, model_names

    bench_ids = {b.id for b in scene.benches}
    for s, station in enumerate(scene.stations):
        if station.bench is not None and station.bench not in bench_ids:
            yield ("stations", s, "bench"), f"unknown bench {station.bench!r}"
        x, y = station.pose.xyz[0], station.pose.xyz[1]
        for b, bench in enumerate(scene.benches):
            point = np.array(
                [
                    [x - 0.01, y - 0.01],
                    [x + 0.01, y - 0.01],
                    [x + 0.01, y + 0.01],
                    [x - 0.01, y + 0.01],
                ]
            )
            if rectangles_overlap(point, _bench_corners(bench)):
                yield (
                    ("stations", s, "pose"),
                    (f"station {station.id!r} stands inside bench {scene.benches[b].id!r}"),
                )
    station_ids = {s.id for s in scene.stations}
    occupied: dict[str, str] = {}
    for r, robot in enumerate(scene.robots):
        if robot.station not in station_ids:
            yield (
                ("robots", r, "station"),
                f"unknown station {robot.station!r} "
                f"(stations: {', '.join(sorted(station_ids)) or 'none'})",
            )
        elif robot.station in occupied:
            yield (
                ("robots", r, "station"),
                (
                    f"station {robot.station!r} already holds robot {occupied[robot.station]!r}; "
                    "one robot per station"
                ),
            )
        else:
            occupied[robot.station] = robot.id
        try:
            model = get_model(robot.model)
        except UnknownModelError:
            yield (
                ("robots", r, "model"),
                (f"unknown model {robot.model!r} (known: {', '.join(model_names())})"),
            )
            continue
        except PackageError as exc:
            first = exc.problems[0] if exc.problems else "unreadable"
            more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
            yield (
                ("robots", r, "model"),
                f"the package of model {robot.model!r} has problems: {first}{more}",
            )
            continue
        if robot.manufacturer is not None and robot.manufacturer != model.manufacturer:
            yield (
                ("robots", r, "manufacturer"),
                (
                    f"{robot.manufacturer!r} does not make {robot.model!r} "
                    f"(its manufacturer is {model.manufacturer!r})"
                ),
            )


def _cranes(scene: Scene) -> Iterator[Issue]:
    sx, sy = scene.floor.size
    for c, crane in enumerate(scene.cranes):
        yield from _crane(c, crane, sx, sy, scene.floor.ceiling)


def _crane(c: int, crane: Crane, sx: float, sy: float, ceiling: float) -> Iterator[Issue]:
    y0, y1 = crane.rail_y
    if not y0 < y1:
        yield (
            ("cranes", c, "rail_y"),
            f"rails must be [low, high] with low < high, got [{y0:g}, {y1:g}]",
        )
    for y_index, y in enumerate(crane.rail_y):
        if not 0.0 <= y <= sy:
            yield (
                ("cranes", c, "rail_y", y_index),
                f"rail at y={y:g} m is outside the floor (0..{sy:g} m)",
            )
    if crane.rail_height > ceiling:
        yield (
            ("cranes", c, "rail_height"),
            f"{crane.rail_height:g} m is above the ceiling ({ceiling:g} m)",
        )
    lo, hi = crane.bridge.travel
    if lo < 0.0 or hi > sx:
        yield (
            ("cranes", c, "bridge", "travel"),
            (f"bridge travel {lo:g}..{hi:g} m leaves the floor (x 0..{sx:g} m)"),
        )
    lo, hi = crane.trolley.travel
    if lo < min(y0, y1) or hi > max(y0, y1):
        yield (
            ("cranes", c, "trolley", "travel"),
            f"trolley travel {lo:g}..{hi:g} m leaves the bridge between the rails "
            f"(y {y0:g}..{y1:g} m)",
        )
    lo, hi = crane.hoist.travel
    if lo < 0.0 or hi >= crane.rail_height:
        yield (
            ("cranes", c, "hoist", "travel"),
            f"hook height {lo:g}..{hi:g} m must lie between the floor and the rails "
            f"({crane.rail_height:g} m)",
        )
    for axis in ("bridge", "trolley", "hoist"):
        value = getattr(crane.home, axis)
        low, high = getattr(crane, axis).travel
        if not low <= value <= high:
            yield (
                ("cranes", c, "home", axis),
                f"{value:g} m is outside {axis} travel {low:g}..{high:g} m",
            )
