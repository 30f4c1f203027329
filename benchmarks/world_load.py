"""How long building the default hall's world takes, beside raw PyBullet loading the same URDFs.

Usage: ``python benchmarks/world_load.py [--repeats N] [--json]``. Prints the median
and spread of ``World(scene)`` build times, and as a baseline, in the same run, the
time for bare ``pybullet.loadURDF`` of the same robot URDFs plus a ground box with
no scene logic (validation, naming, benches, crane) around it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import machine_info
from robots import get_model
from robots.bullet import pb
from scenes import load_scene
from scenes.model import Scene
from twin.world.world import World


def _raw_load(scene: Scene) -> float:
    started = time.perf_counter()
    client = pb.connect(pb.DIRECT)
    try:
        ground = pb.createCollisionShape(
            pb.GEOM_BOX, halfExtents=(20, 12, 0.05), physicsClientId=client
        )
        pb.createMultiBody(0, ground, physicsClientId=client)
        for robot in scene.robots:
            station = scene.station(robot.station)
            model = get_model(robot.model)
            pb.loadURDF(
                str(model.loadable_urdf),
                basePosition=(station.pose.xyz[0], station.pose.xyz[1], model.base_height_m),
                useFixedBase=True,
                flags=pb.URDF_USE_INERTIA_FROM_FILE,
                physicsClientId=client,
            )
        return time.perf_counter() - started
    finally:
        pb.disconnect(physicsClientId=client)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    args = parser.parse_args()

    started = time.perf_counter()
    scene = load_scene()
    validate_s = time.perf_counter() - started

    builds, raws = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        with World(scene) as world:
            builds.append(time.perf_counter() - started)
            bodies = len(world.body_names())
        raws.append(_raw_load(scene))
    result = {
        "benchmark": "world_load",
        "scene": scene.name,
        "robots": len(scene.robots),
        "bodies": bodies,
        "repeats": args.repeats,
        "scene_validate_s": round(validate_s, 4),
        "world_build_s_median": round(statistics.median(builds), 4),
        "world_build_s_min": round(min(builds), 4),
        "world_build_s_max": round(max(builds), 4),
        "raw_pybullet_load_s_median": round(statistics.median(raws), 4),
        "target_s": 2.0,
        "machine": machine_info(),
    }
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
