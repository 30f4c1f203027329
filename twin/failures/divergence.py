"""The twin's prediction of a robot's joints, shared by the divergence detector and the ghost.

From one report to the next, ``dt_s`` later, no joint can move faster than its velocity
limit (times a speed factor for margin). The twin's prediction of a new report is the old
report plus each joint's change clipped to that reachable envelope: where the robot
reports a jump no motor could make, the prediction stops at the edge of the envelope.
:meth:`twin.failures.monitors.Monitors._diverge` raises a ``divergence`` failure where a report lies
too far outside it, and ``twin replay`` draws the same prediction as a ghost
(:mod:`viz.ghost`).
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike, NDArray

log = logging.getLogger(__name__)


def predict_envelope(
    before: ArrayLike,
    reported: ArrayLike,
    velocity_limit: ArrayLike,
    dt_s: float,
    speed_factor: float,
) -> NDArray[np.float64]:
    """Where each joint can be ``dt_s`` after ``before``, closest to what was ``reported``.

    ``before + clip(reported - before, -reach, reach)`` with ``reach = velocity_limit *
    speed_factor * dt_s`` per joint (unbounded where the limit is not finite). The
    distance of a report from its prediction, ``|reported - prediction|``, is how far it
    lies beyond what the joint could have moved.
    """
    old = np.asarray(before, dtype=np.float64)
    new = np.asarray(reported, dtype=np.float64)
    limit = np.asarray(velocity_limit, dtype=np.float64)
    reach = np.where(np.isfinite(limit), np.abs(limit) * speed_factor * dt_s, np.inf)
    predicted: NDArray[np.float64] = old + np.clip(new - old, -reach, reach)
    return predicted
