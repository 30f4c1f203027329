"""What the hands do to items in a preview run: a grasp as a grip-bounded fixed constraint from
the hand to the item (if the hand is close enough when it closes), the held item watched for a
slip (dropped), its release, where it came to rest (placed), and the hand's dynamic reach check.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from robots.bullet import pb
from twin.preview.run_state import RunState

log = logging.getLogger(__name__)

GRIP_FORCE_N: Final = 400.0
GRASP_REACH_M: Final = 0.02
"""A grasp closes on an item only if the hand's collision shape is this close to it."""
DROP_M: Final = 0.05
"""A held item this far from where the hand holds it has slipped out (dropped)."""
PLACE_TOLERANCE_M: Final = 0.05
DYNAMIC_REACH_TOLERANCE_M: Final = 0.05
HAND_SETTLE_S: Final = 0.25


class Grasping(RunState):
    """Grasp, hold, release and place events of a run, and the hand checks."""

    def _hand_com(self, side: str) -> NDArray[np.float64]:
        hall = self.hall
        state = pb.getLinkState(hall.body, self.hand_link[side], physicsClientId=hall.client)
        return np.array(state[0])

    def _hand_check(self, target: Any, t_s: float) -> None:
        if not target.reached or target.hand not in self.hand_link:
            return
        error = float(np.linalg.norm(self._hand_com(target.hand) - np.array(target.target_m)))
        self.max_hand_error = max(self.max_hand_error, error)
        if error > DYNAMIC_REACH_TOLERANCE_M:
            self.checks.raise_once(
                "reach", f"dyn:{target.step}:{target.what}", target.step, t_s,
                f"{target.hand} hand {error:.3f} m from {target.what} in dynamics "
                f"(tolerance {DYNAMIC_REACH_TOLERANCE_M:g} m)",
            )  # fmt: skip

    def _grasp(self, span: Any, t_s: float) -> None:
        hall, client = self.hall, self.hall.client
        body = hall.item_body(span.item)
        link = self.hand_link[span.hand]
        hand = pb.getLinkState(hall.body, link, physicsClientId=client)
        item_pos, item_orn = pb.getBasePositionAndOrientation(body, physicsClientId=client)
        near = pb.getClosestPoints(
            hall.body, body, 1.0, linkIndexA=link, linkIndexB=-1, physicsClientId=client
        )
        gap = min((float(p[8]) for p in near), default=math.inf)
        if gap > GRASP_REACH_M:
            self.checks.raise_once(
                "grasp", span.item, span.grasp_step, t_s,
                f"{span.hand} hand {gap:.3f} m from item:{span.item} when closing "
                f"(needs {GRASP_REACH_M:g} m): nothing grasped",
            )  # fmt: skip
            return
        # a constraint's parent frame is relative to the link's centre of mass frame (not its
        # URDF frame: getLinkState [4], [5]), so the item stays where the hand took it
        inv_pos, inv_orn = pb.invertTransform(hand[0], hand[1])
        rel_pos, rel_orn = pb.multiplyTransforms(inv_pos, inv_orn, item_pos, item_orn)
        constraint = pb.createConstraint(
            hall.body, link, body, -1, pb.JOINT_FIXED, (0, 0, 0), rel_pos, (0, 0, 0),
            parentFrameOrientation=rel_orn, physicsClientId=client,
        )  # fmt: skip
        pb.changeConstraint(
            constraint,
            maxForce=GRIP_FORCE_N * self.friction_scale * self.var.grip_scale,
            physicsClientId=client,
        )
        for own in self.hand_links.get(span.hand, set()):
            pb.setCollisionFilterPair(hall.body, body, own, -1, 0, physicsClientId=client)
        self.held[span.item] = (constraint, link, span.hand, np.array(rel_pos))

    def _release(self, span: Any, t_s: float) -> None:
        held = self.held.pop(span.item, None)
        if held is None:
            return
        hall, client = self.hall, self.hall.client
        pb.removeConstraint(held[0], physicsClientId=client)
        body = hall.item_body(span.item)
        for own in self.hand_links.get(span.hand, set()):
            pb.setCollisionFilterPair(hall.body, body, own, -1, 1, physicsClientId=client)

    def _placed(self, span: Any, t_s: float) -> None:
        if span.place_target_m is None or span.item in self.dropped:
            return
        body = self.hall.item_body(span.item)
        pos = pb.getBasePositionAndOrientation(body, physicsClientId=self.hall.client)[0]
        miss = float(np.linalg.norm(np.array(pos) - np.array(span.place_target_m)))
        if miss > PLACE_TOLERANCE_M:
            self.checks.raise_once(
                "place", span.item, span.place_step, t_s,
                f"item:{span.item} came to rest {miss:.3f} m from where it was to be placed "
                f"({format_xyz(span.place_target_m)})",
            )  # fmt: skip

    def _held_check(self, t_s: float, step: int) -> None:
        hall, client = self.hall, self.hall.client
        for item, (constraint, link, hand, rel) in list(self.held.items()):
            state = pb.getLinkState(hall.body, link, physicsClientId=client)
            expected, _ = pb.multiplyTransforms(state[0], state[1], rel.tolist(), (0, 0, 0, 1))
            body = hall.item_body(item)
            pos = pb.getBasePositionAndOrientation(body, physicsClientId=client)[0]
            slip = float(np.linalg.norm(np.array(pos) - np.array(expected)))
            if slip > DROP_M:
                self.checks.raise_once(
                    "grasp", item, step, t_s,
                    f"item:{item} slipped {slip:.3f} m out of the {hand} hand: dropped",
                )  # fmt: skip
                pb.removeConstraint(constraint, physicsClientId=client)
                del self.held[item]
                self.dropped.add(item)


def format_xyz(v: tuple[float, float, float]) -> str:
    return "({:.2f}, {:.2f}, {:.2f}) m".format(*v)
