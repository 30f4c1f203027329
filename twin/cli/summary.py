"""What a hall holds, as plain data: the summary behind ``twin scene check`` and the demo."""

from __future__ import annotations

from collections import Counter
from typing import Any

from robots import get_model
from scenes.model import Scene


def scene_summary(scene: Scene) -> dict[str, Any]:
    """A JSON-ready summary of a validated scene (SI units, key names carry them)."""
    robots: list[dict[str, Any]] = []
    for robot in scene.robots:
        model = get_model(robot.model)
        robots.append(
            {
                "id": robot.id,
                "model": model.name,
                "manufacturer": model.manufacturer,
                "dof": model.dof,
                "height_m": round(model.height_m, 3),
                "station": robot.station,
                "task": robot.task,
                "telemetry_rate_hz": model.profile.rate_hz,
            }
        )
    per_maker: Counter[str] = Counter(r["manufacturer"] for r in robots)
    makers = [
        {
            "name": name,
            "robots": count,
            "models": sorted({r["model"] for r in robots if r["manufacturer"] == name}),
        }
        for name, count in sorted(per_maker.items())
    ]
    return {
        "scene": scene.name,
        "floor": {"size_m": list(scene.floor.size), "ceiling_m": scene.floor.ceiling},
        "robots": robots,
        "manufacturers": makers,
        "benches": [
            {
                "id": bench.id,
                "size_m": list(bench.size),
                "height_m": bench.height,
                "items": [{"id": item.id, "kind": item.kind} for item in bench.items],
            }
            for bench in scene.benches
        ],
        "cranes": [
            {
                "id": crane.id,
                "bridge_travel_m": list(crane.bridge.travel),
                "trolley_travel_m": list(crane.trolley.travel),
                "hoist_travel_m": list(crane.hoist.travel),
                "speeds_m_s": {
                    "bridge": crane.bridge.speed,
                    "trolley": crane.trolley.speed,
                    "hoist": crane.hoist.speed,
                },
                "load_kg": crane.load.mass if crane.load else None,
            }
            for crane in scene.cranes
        ],
        "panels": [{"id": panel.id, "shows": list(panel.shows)} for panel in scene.panels],
        "hub": {"id": scene.hub.id, "position_m": list(scene.hub.pose.xyz)},
        "sensors": [
            {"id": sensor.id, "kind": sensor.kind, "position_m": list(sensor.pose.xyz)}
            for sensor in scene.sensors
        ],
    }
