"""The kiosk's camera tour: a slow, smooth visit of every workstation, on a loop.

Pure geometry (no state but the scene), so a frame's camera depends only on time:
the tour is reproducible and the kiosk's memory stays flat however long it runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyvista as pv
from numpy.typing import NDArray

from scenes.model import Scene

DWELL_S: Final = 6.0
MOVE_S: Final = 2.5
ORBIT_RAD_S: Final = 0.06
_BACK_M: Final = 3.6
_SIDE_M: Final = 2.4
_UP_M: Final = 2.3
_FOCUS_Z_M: Final = 1.0


@dataclass(frozen=True)
class Keyframe:
    """Where the camera looks from and at, for one station."""

    position: NDArray[np.float64]
    focal: NDArray[np.float64]


def _smooth(u: float) -> float:
    u = min(1.0, max(0.0, u))
    return u * u * (3 - 2 * u)


class CameraTour:
    """Keyframes at every station (or the hub if there is none), visited in order."""

    def __init__(self, scene: Scene) -> None:
        self.keyframes: list[Keyframe] = []
        for station in scene.stations:
            x, y, _ = station.pose.xyz
            yaw = station.pose.yaw_rad
            c, s = math.cos(yaw), math.sin(yaw)
            back = np.array([-c * _BACK_M - s * _SIDE_M, -s * _BACK_M + c * _SIDE_M, _UP_M])
            focal = np.array([x, y, _FOCUS_Z_M])
            self.keyframes.append(Keyframe(focal + back, focal))
        if not self.keyframes:
            hub = np.array(scene.hub.pose.xyz, dtype=np.float64)
            self.keyframes.append(Keyframe(hub + np.array([-6.0, -6.0, 5.0]), hub))
        self.period_s = len(self.keyframes) * (DWELL_S + MOVE_S)

    def camera_at(self, t_s: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(position, focal point) at tour time ``t_s``."""
        t = t_s % self.period_s
        leg = int(t // (DWELL_S + MOVE_S))
        within = t - leg * (DWELL_S + MOVE_S)
        here = self.keyframes[leg]
        if within < DWELL_S:
            angle = ORBIT_RAD_S * (within - DWELL_S / 2)
            offset = here.position - here.focal
            c, s = math.cos(angle), math.sin(angle)
            turned = np.array(
                [c * offset[0] - s * offset[1], s * offset[0] + c * offset[1], offset[2]]
            )
            return here.focal + turned, here.focal
        nxt = self.keyframes[(leg + 1) % len(self.keyframes)]
        u = _smooth((within - DWELL_S) / MOVE_S)
        angle = ORBIT_RAD_S * DWELL_S / 2
        offset = here.position - here.focal
        c, s = math.cos(angle), math.sin(angle)
        start = here.focal + np.array(
            [c * offset[0] - s * offset[1], s * offset[0] + c * offset[1], offset[2]]
        )
        offset_next = nxt.position - nxt.focal
        c, s = math.cos(-angle), math.sin(-angle)
        end = nxt.focal + np.array(
            [
                c * offset_next[0] - s * offset_next[1],
                s * offset_next[0] + c * offset_next[1],
                offset_next[2],
            ]
        )
        lift = np.array([0.0, 0.0, 1.5 * math.sin(math.pi * u)])
        return start + (end - start) * u + lift, here.focal + (nxt.focal - here.focal) * u

    def apply(self, plotter: pv.Plotter, t_s: float) -> None:
        """Point the plotter's camera where the tour is at ``t_s``."""
        position, focal = self.camera_at(t_s)
        plotter.camera_position = [tuple(position), tuple(focal), (0.0, 0.0, 1.0)]
