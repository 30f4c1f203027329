"""What holds a previewed robot up: the stabiliser's force in and outside walks, the centre of
pressure (ZMP) and centre of mass (CoM) margins inside the feet's support polygon, and each
foot's floor force, sampled at the balance checks for the report and its plots.

Outside walks, the support a robot needs is the verdict on its balance: on its own feet
(``twin preview``'s default) any support above :data:`MAX_SUPPORT_OUTSIDE_WALKS` of its weight
fails the preview (``balance``); carried throughout (``--carried``), the figure is reported so
the hook is visible. The ZMP on flat ground is the centre of pressure of the floor contacts; its
margin is how far it stays inside their convex hull (0 at an edge: a foot about to roll).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from robots.bullet import pb
from twin.preview.checks import support_margin

log = logging.getLogger(__name__)

MAX_SUPPORT_OUTSIDE_WALKS: Final = 0.10
"""Support above this fraction of the robot's weight outside walks fails an own-feet preview."""


@dataclass
class SupportSeries:
    """Samples at the balance checks (for the plots)."""

    t_s: list[float] = field(default_factory=list)
    support_fraction: list[float] = field(default_factory=list)
    zmp_margin_m: list[float] = field(default_factory=list)
    com_margin_m: list[float] = field(default_factory=list)
    foot_force_n: dict[str, list[float]] = field(default_factory=dict)


class Support:
    """The support figures of one run (see the module docstring)."""

    def __init__(self, feet: dict[int, str]) -> None:
        self.feet = feet
        self.max_in_walks = 0.0
        self.max_outside_walks = 0.0
        self.min_zmp_margin_m = math.inf
        self.min_com_margin_m = math.inf
        self.series = SupportSeries(foot_force_n={name: [] for name in feet.values()})

    def force(self, fraction: float, walking: bool) -> None:
        """The stabiliser's force (fraction of weight) at a check, in a walk or not."""
        if walking:
            self.max_in_walks = max(self.max_in_walks, fraction)
        else:
            self.max_outside_walks = max(self.max_outside_walks, fraction)

    def sample(
        self,
        t_s: float,
        body: int,
        floor: int,
        client: int,
        com_xy: NDArray[np.float64],
        fraction: float,
        judged: bool,
    ) -> tuple[float | None, float | None]:
        """Read the floor contacts at a balance check: (ZMP margin, CoM margin) in m (None: no
        foot down). ``judged``: outside walks, so the margins count for the minima."""
        contacts = pb.getContactPoints(body, floor, physicsClientId=client) or ()
        points = np.array([[c[5][0], c[5][1]] for c in contacts]).reshape(-1, 2)
        normal = np.array([float(c[9]) for c in contacts])
        per_foot = dict.fromkeys(self.feet.values(), 0.0)
        for c, f in zip(contacts, normal, strict=True):
            name = self.feet.get(int(c[3]))
            if name is not None:
                per_foot[name] += float(f)
        zmp: float | None = None
        total = float(normal.sum())
        if len(points) and total > 0.0:
            cop = (points * normal[:, None]).sum(axis=0) / total
            zmp = support_margin(points, cop)
        com = support_margin(points, com_xy)
        if judged:  # no foot down: the CoM check says so; the ZMP is then undefined
            if zmp is not None:
                self.min_zmp_margin_m = min(self.min_zmp_margin_m, zmp)
            self.min_com_margin_m = min(self.min_com_margin_m, -math.inf if com is None else com)
        s = self.series
        s.t_s.append(round(t_s, 4))
        s.support_fraction.append(fraction)
        s.zmp_margin_m.append(math.nan if zmp is None else zmp)
        s.com_margin_m.append(math.nan if com is None else com)
        for name, value in per_foot.items():
            s.foot_force_n[name].append(value)
        return zmp, com


def finite_or_none(value: float) -> float | None:
    """A minimum for the report: None when it never saw a sample (inf); a sample with no foot
    on the floor (-inf) as -1 m (far outside any foot)."""
    if value == math.inf:
        return None
    return max(value, -1.0)
