"""The checks glue of a preview run: each check tick reads the hall (joint states, the nearest
bodies less what the hand at work may touch, the stabiliser's force in and outside walks, the
centre of pressure and the centre of mass over the feet's floor contacts, see
:mod:`twin.preview.support`) and hands it to :class:`twin.preview.checks.Checks`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from robots.bullet import pb
from scenes.model import Scene
from scenes.tasks import item_on_bench, target_point
from twin.preview.checks import CLEARANCE_HORIZON_M
from twin.preview.grasping import Grasping
from twin.preview.support import MAX_SUPPORT_OUTSIDE_WALKS

FALLEN_HEIGHT_SHARE = 0.6
FALLEN_TILT_RAD = 1.0

log = logging.getLogger(__name__)


class RunChecks(Grasping):
    """The run's checks (every CHECK_EVERY physics steps; balance every BALANCE_EVERY)."""

    def _check(self, t_s: float, balance: bool) -> None:
        hall, client = self.hall, self.hall.client
        step = self.step_at(t_s)
        states = pb.getJointStates(hall.body, hall.motors, physicsClientId=client)
        positions = np.array([s[0] for s in states])
        efforts = np.array([s[3] for s in states])
        if self.var.noise_sigma_m:
            positions = positions + self.rng.normal(0.0, self.var.noise_sigma_m, len(positions))
        targets = self._previous_targets if self._previous_targets is not None else positions
        # the stabiliser taking hold or letting go around a walk is the preview's way of
        # walking, not the robot's: its jolt is not judged as the robot's effort
        judge = not self.handing_over(t_s)
        limit, effort = self.checks.joints(t_s, step, positions, efforts, targets, judge)
        clearance = self.checks.clearance(t_s, step, self._nearest(step))
        self.checks.work_contact(t_s, step, self._work_pushes(step))
        force = hall.stabiliser_force_n() / hall.weight_n
        self.max_stabiliser = max(self.max_stabiliser, force)
        walking = self.walking_now(t_s) or self.c.task.steps[step].kind == "walk"
        self.support.force(force, walking)
        if self.on_own_feet and not walking and force > MAX_SUPPORT_OUTSIDE_WALKS:
            self.checks.raise_once(
                "balance", "support", step, t_s,
                f"held up by {force:.2f} of its weight outside a walk "
                f"(the limit is {MAX_SUPPORT_OUTSIDE_WALKS:g})",
            )  # fmt: skip
        self._held_check(t_s, step)
        if balance and self.on_own_feet and not walking and self._fallen(t_s, step):
            self.fallen = True
        if balance:
            _, com = self.support.sample(
                t_s, hall.body, hall.floor, client, self.com_world_xy(), force, not walking
            )
            if not walking:
                self.checks.balance(t_s, step, com)
        if self.keep_series:
            self.checks.sample(t_s, limit, effort, clearance)

    def _work_set(self, step: int) -> tuple[set[int], set[str]]:
        """(own links exempt, other bodies they may touch) for a step's hand at work."""
        s = self.c.task.steps[step]
        scene = self.scene
        benches: set[str] = set()
        sides: set[str] = set()
        if s.reach is not None:
            sides.add(s.reach.hand)
            t = s.reach.target
            if t.bench is not None:
                benches.add(t.bench)
            elif t.item is not None:
                benches.add(item_on_bench(scene, t.item)[0].id)
            else:
                benches.update(_benches_near(scene, target_point(t, scene)))
        elif s.grasp is not None:
            sides.add(s.grasp.hand)
            benches.add(item_on_bench(scene, s.grasp.item)[0].id)
        elif s.place is not None:
            sides.update(("left", "right"))
            benches.add(item_on_bench(scene, s.place.item)[0].id)
            benches.update(_benches_near(scene, target_point(s.place.at, scene)))
        elif s.torque is not None:
            sides.update(("left", "right"))
            benches.add(item_on_bench(scene, s.torque.wrench)[0].id)
            if s.torque.at is not None:
                benches.update(_benches_near(scene, target_point(s.torque.at, scene)))
        elif s.calibrate is not None:
            sides.update(("left", "right"))
            benches.add(item_on_bench(scene, s.calibrate.array)[0].id)
        links: set[int] = set()
        for side in sides:
            links |= self.hand_links.get(side, set())
        others = {f"bench:{b}" for b in benches}
        for bench in scene.benches:
            if bench.id in benches:
                others.update(f"item:{i.id}" for i in bench.items)
        return links, others

    def _nearest(self, step: int) -> list[tuple[float, str, str]]:
        hall, client = self.hall, self.hall.client
        base = pb.getBasePositionAndOrientation(hall.body, physicsClientId=client)[0]
        reach = 1.2 + CLEARANCE_HORIZON_M
        box_lo = (base[0] - reach, base[1] - reach, 0.02)
        box_hi = (base[0] + reach, base[1] + reach, base[2] + 1.5 + CLEARANCE_HORIZON_M)
        overlapping = pb.getOverlappingObjects(box_lo, box_hi, physicsClientId=client) or ()
        near = {int(b) for b, _ in overlapping}
        exempt_links, work = self._work_set(step)
        held = {f"item:{item}" for item in self.held}
        out: list[tuple[float, str, str]] = []
        for other in hall.others:
            if other.body not in near or other.name in held:
                continue
            points = pb.getClosestPoints(
                hall.body, other.body, CLEARANCE_HORIZON_M, physicsClientId=client
            )
            best: tuple[float, int, int] | None = None
            for p in points or ():
                if other.name in work and int(p[3]) in exempt_links:
                    continue
                if best is None or p[8] < best[0]:
                    best = (float(p[8]), int(p[3]), int(p[4]))
            if best is not None:
                out.append((best[0], hall.link_name(best[1]), self._other_name(other, best[2])))
        return out

    def _work_pushes(self, step: int) -> list[tuple[float, str, str]]:
        """(normal force N, own link, bench) of the working arm on the benches it works at
        (contacts the clearance check leaves out), summed per link and bench. Items are not
        judged: a hand grasping or lifting an item presses on it as it must."""
        exempt_links, work = self._work_set(step)
        if not exempt_links:
            return []
        hall, client = self.hall, self.hall.client
        out: list[tuple[float, str, str]] = []
        for other in hall.others:
            if other.name not in work or not other.name.startswith("bench:"):
                continue
            forces: dict[int, float] = {}
            for p in pb.getContactPoints(hall.body, other.body, physicsClientId=client) or ():
                link = int(p[3])
                if link in exempt_links:
                    forces[link] = forces.get(link, 0.0) + float(p[9])
            out.extend((f, hall.link_name(link), other.name) for link, f in forces.items())
        return out

    def _other_name(self, other: Any, link: int) -> str:
        if other.name.startswith("crane:") and link >= 0:
            crane = self.hall.world.cranes[other.name.partition(":")[2]]
            for name, index in crane.link_index.items():
                if index == link:
                    return f"{other.name}/{name}"
        return str(other.name)

    def _fallen(self, t_s: float, step: int) -> bool:
        """On its own feet: the pelvis below FALLEN_HEIGHT_SHARE of its standing height, or
        tilted over FALLEN_TILT_RAD, is a fall (``balance``; the run ends there)."""
        hall = self.hall
        position, orientation = pb.getBasePositionAndOrientation(
            hall.body, physicsClientId=hall.client
        )
        up = pb.getMatrixFromQuaternion(orientation)[8]  # the pelvis's z axis, world z part
        tilt = math.acos(max(-1.0, min(1.0, float(up))))
        if position[2] >= FALLEN_HEIGHT_SHARE * self.heights[0] and tilt <= FALLEN_TILT_RAD:
            return False
        self.checks.raise_once(
            "balance", "fall", step, t_s,
            f"fell: pelvis {position[2]:.2f} m high, tilted {math.degrees(tilt):.0f} deg",
        )  # fmt: skip
        return True


def _benches_near(scene: Scene, point: tuple[float, float, float]) -> set[str]:
    """Benches whose footprint (grown by 10 cm) is under a point."""
    out = set()
    for bench in scene.benches:
        c, s = math.cos(-bench.pose.yaw_rad), math.sin(-bench.pose.yaw_rad)
        dx, dy = point[0] - bench.pose.xyz[0], point[1] - bench.pose.xyz[1]
        lx, ly = c * dx - s * dy, s * dx + c * dy
        if abs(lx) <= bench.size[0] / 2 + 0.1 and abs(ly) <= bench.size[1] / 2 + 0.1:
            out.add(bench.id)
    return out
