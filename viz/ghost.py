"""The divergence ghost: in replay, the twin's prediction drawn over the robot's report.

A ``divergence`` failure (:mod:`twin.failures.monitors`) says a robot reported a jump no motor
could make. In ``twin replay`` a robot's divergence is *active* from each of its
divergence events for ``GHOST_WINDOW_S`` (1 s, the detector's clear-hold time: a
raised condition stays raised at least that long; a new event inside a window extends it).
While it is active, a translucent cyan copy of the robot is drawn at the twin's
prediction for the shown instant: the report one detector check earlier (50 ms) plus
each joint's change clipped to its speed-limit envelope, computed by
:func:`twin.failures.divergence.predict_envelope`, the same function the detector uses. At the
event's instant the ghost stands where the twin expected the robot and the robot where
it said it was; where the reports are back within the envelope the ghost coincides with
the robot and only tints it, marking it as still in divergence for the rest of the window.

Each robot that has a divergence event gets its own low-opacity :class:`RobotBatch`, built
once, posed from the viewer's kinematic world (the predicted joints are set, the batch
reads its link poses, the reported joints are put back; the world is never stepped). A
recording without divergence events, or an instant outside every window, costs nothing.
Divergences found only offline (``twin failures`` on a recording made without monitors)
are not on the recording's ``/events`` channel and get no ghost.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import NDArray

from robots import get_model
from twin.failures.divergence import predict_envelope
from twin.failures.monitors import (
    CLEAR_HOLD_NS,
    DEFAULT_RATE_HZ,
    DIVERGENCE_SPEED_FACTOR,
    MAX_PREDICTION_S,
)
from twin.record.replay_events import divergence_times
from twin.record.replay_source import ReplaySource
from viz.robot_mesh import RobotBatch

if TYPE_CHECKING:
    import pyvista as pv

    from viz.viewer import HallViewer

log = logging.getLogger(__name__)

GHOST_WINDOW_S: Final = CLEAR_HOLD_NS / 1e9
CHECK_S: Final = 1.0 / DEFAULT_RATE_HZ  # the detector's check period: "one check earlier"
GHOST_RGB: Final = (0.0, 1.0, 1.0)  # cyan
GHOST_OPACITY: Final = 0.35


class DivergenceGhost:
    """Translucent predicted poses of the robots in divergence, over a replay's viewer."""

    def __init__(
        self,
        viewer: HallViewer,
        source: ReplaySource,
        *,
        visible: bool = True,
        window_s: float = GHOST_WINDOW_S,
    ) -> None:
        self.viewer = viewer
        self.source = source
        self.visible = visible
        self.window_s = window_s
        known = set(viewer.world.robots)
        self.times = {r: t for r, t in divergence_times(source.events).items() if r in known}
        self.batches: dict[str, RobotBatch] = {}
        self.actors: dict[str, pv.Actor] = {}
        self._velocity: dict[str, tuple[list[str], NDArray[np.float64]]] = {}
        for robot_id in self.times:
            batch = RobotBatch(viewer.world, robot_ids=[robot_id])
            actor = viewer.plotter.add_mesh(
                batch.mesh, color=GHOST_RGB, opacity=GHOST_OPACITY, ambient=0.5, diffuse=0.6,
                specular=0.0, name=f"ghost-{robot_id}", reset_camera=False,
            )  # fmt: skip
            actor.visibility = False
            self.batches[robot_id], self.actors[robot_id] = batch, actor
        self.shown: tuple[str, ...] = ()
        log.debug("ghosts for %d robots with divergences", len(self.batches))

    def active(self, t_s: float) -> list[str]:
        """Robots whose divergence is active at ``t_s``: within ``window_s`` after an event."""
        found = []
        for robot_id, times in self.times.items():
            i = bisect_right(times, t_s + 1e-9)  # an event at exactly t_s counts
            if i and t_s - times[i - 1] <= self.window_s:
                found.append(robot_id)
        return found

    def toggle(self) -> bool:
        """Show or hide the ghosts (the replay window's ``g`` key); the new state."""
        self.visible = not self.visible
        self.update()
        return self.visible

    def prediction(self, robot_id: str, t_s: float) -> dict[str, float] | None:
        """The twin's predicted joints (by name) for the report shown at ``t_s``, if any."""
        reports = self.source.joint_reports(robot_id, t_s, CHECK_S)
        if reports is None:
            return None
        dt_s, before, reported = reports
        if not 0.0 < dt_s <= MAX_PREDICTION_S:
            return None  # a telemetry gap, not motion: the detector does not predict either
        names, velocity = self._limits(robot_id)
        if len(names) != len(reported):
            return None
        predicted = predict_envelope(before, reported, velocity, dt_s, DIVERGENCE_SPEED_FACTOR)
        return dict(zip(names, predicted.tolist(), strict=True))

    def _limits(self, robot_id: str) -> tuple[list[str], NDArray[np.float64]]:
        names = self.source.robots[robot_id].joint_names
        cached = self._velocity.get(robot_id)
        if cached is None or cached[0] != names:
            model = get_model(self.source.robots[robot_id].model)
            velocity = np.array([model.joint(n).velocity_limit for n in names], dtype=np.float64)
            cached = self._velocity[robot_id] = (list(names), velocity)
        return cached

    def update(self) -> tuple[str, ...]:
        """Pose and show the ghosts for the source's instant (call after the viewer's update,
        which posed the world at the reports); the robots shown."""
        shown: list[str] = []
        if self.visible and self.times:
            world = self.viewer.world
            for robot_id in self.active(self.source.t_s):
                predicted = self.prediction(robot_id, self.source.t_s)
                if predicted is None:
                    continue
                view = self.source.robots[robot_id]
                world.set_joint_positions(robot_id, predicted)
                self.batches[robot_id].update()
                world.set_joint_positions(
                    robot_id, dict(zip(view.joint_names, view.positions, strict=True))
                )
                shown.append(robot_id)
        for robot_id, actor in self.actors.items():
            actor.visibility = robot_id in shown
        self.shown = tuple(shown)
        return self.shown
