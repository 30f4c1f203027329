"""Is a plan fit to send? Known joints, finite values within limits, times in order.

The dispatch gate checks a plan with :func:`plan_problems` before it sends it, and a gateway
(the hall emulator's) checks it again on receipt, so both sides refuse the same plans.
"""

from __future__ import annotations

import math
from typing import Final

from robots import RobotModel
from scenes.model import Scene
from twin.plan.model import TaskPlan

LIMIT_EPSILON_RAD: Final = 1e-9
MAX_PLAN_S: Final = 3600.0
MAX_FRAMES: Final = 100_000


def plan_problems(plan: TaskPlan, model: RobotModel, scene: Scene | None = None) -> list[str]:
    """Everything wrong with a plan for a robot of ``model`` (empty: fine).

    Joint names must be joints of the model (canonical or vendor names), values finite and
    within the joint's limits; times finite, non-negative, non-decreasing and at most
    :data:`MAX_PLAN_S`; the base path finite (and on the floor when ``scene`` is given);
    grip within 0..1.
    """
    problems: list[str] = []
    if not plan.frames:
        return ["the plan has no frames"]
    if len(plan.frames) > MAX_FRAMES:
        return [f"the plan has {len(plan.frames)} frames (at most {MAX_FRAMES})"]
    previous_t = 0.0
    for i, frame in enumerate(plan.frames):
        where = f"frame {i} (t={frame.t_s:g} s)"
        if not math.isfinite(frame.t_s) or frame.t_s < previous_t or frame.t_s > MAX_PLAN_S:
            problems.append(f"{where}: time not finite, going back, or beyond {MAX_PLAN_S:g} s")
        else:
            previous_t = frame.t_s
        x, y, yaw = frame.base_xy_yaw
        if not all(math.isfinite(v) for v in (x, y, yaw)):
            problems.append(f"{where}: base x/y/yaw not finite")
        elif scene is not None and not (
            0.0 <= x <= scene.floor.size[0] and 0.0 <= y <= scene.floor.size[1]
        ):
            problems.append(f"{where}: base ({x:.2f}, {y:.2f}) m is off the floor")
        if not (math.isfinite(frame.grip) and 0.0 <= frame.grip <= 1.0):
            problems.append(f"{where}: grip {frame.grip!r} outside 0..1")
        for name, value in frame.joints_rad.items():
            try:
                joint = model.joint(name)
            except KeyError:
                problems.append(f"{where}: {model.name} has no joint {name!r}")
                continue
            if not math.isfinite(value):
                problems.append(f"{where}: {name} target {value!r} is not finite")
            elif not joint.lower - LIMIT_EPSILON_RAD <= value <= joint.upper + LIMIT_EPSILON_RAD:
                problems.append(
                    f"{where}: {name} target {value:.4f} outside its limits "
                    f"[{joint.lower:.4f}, {joint.upper:.4f}]"
                )
        if len(problems) >= 20:
            problems.append("(more problems not listed)")
            break
    return problems
