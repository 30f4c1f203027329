"""The collision detector's box test never skips a pair that touches."""

from __future__ import annotations

import random

from robots.bullet import pb
from scenes import load_scene
from twin.failures.monitors import Box, _may_touch
from twin.world.world import World


def test_pairs_whose_boxes_are_apart_never_touch() -> None:
    world = World(load_scene())
    try:
        rng = random.Random(1)
        robots = [f"robot:{rid}" for rid in world.robots]
        others = [n for n in world.body_names() if n.startswith(("bench:", "crane:"))]
        skipped = touching = 0
        for trial in range(12):
            for rid in world.robots:
                body, client = world.robot(rid).body, world.client
                n = pb.getNumJoints(body, physicsClientId=client)
                values = [[rng.uniform(-1.5, 1.5)] for _ in range(n)]
                pb.resetJointStatesMultiDof(
                    body, list(range(n)), targetValues=values, physicsClientId=client
                )
                if trial % 2:  # crowd them into a few metres
                    position, orientation = pb.getBasePositionAndOrientation(
                        body, physicsClientId=client
                    )
                    x, y = rng.uniform(2.0, 6.0), rng.uniform(2.0, 6.0)
                    pb.resetBasePositionAndOrientation(
                        body, (x, y, position[2]), orientation, physicsClientId=client
                    )
            boxes: dict[str, Box | None] = {}
            for i, a in enumerate(robots):
                for b in [*robots[i + 1 :], *others]:
                    depth = -min((c.distance_m for c in world.contacts(a, b)), default=0.0)
                    touching += depth > 0.0
                    if not _may_touch(world, boxes, a, b):
                        skipped += 1
                        assert depth <= 0.0, (a, b, depth)
        assert skipped > 0 and touching > 0  # the test saw both kinds
    finally:
        world.close()
