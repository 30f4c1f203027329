"""The joint panel: a selected robot's recent joint positions and efforts against their limits.

History is kept for every robot (so a selection shows the past at once), capped at
HISTORY_S seconds sampled at HISTORY_HZ: memory stays flat however long a kiosk runs.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyvista as pv
from numpy.typing import NDArray

from sync.fanout import RobotView

log = logging.getLogger(__name__)

HISTORY_S: Final = 10.0
HISTORY_HZ: Final = 30.0
_PALETTE: Final = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


@dataclass
class JointIndex:
    """For one robot: where each view joint goes in the world, and its limits."""

    names: list[str]
    link: NDArray[np.int64]  # PyBullet link (= joint) index per view joint
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]
    effort_limit: NDArray[np.float64]
    velocity_limit: NDArray[np.float64]


class JointPanel:
    """A 2D chart in the corner of the 3D view, for the selected robot."""

    def __init__(self, plotter: pv.Plotter) -> None:
        self.plotter = plotter
        self.selected: str | None = None
        self._history: dict[str, deque[tuple[float, list[float], list[float]]]] = {}
        self._last_s: dict[str, float] = {}
        self._chart: pv.Chart2D | None = None
        self._chart_lines: list[pv.charts.LinePlot2D] = []

    def remember(self, view: RobotView, now_s: float) -> None:
        """Keep a robot's joint state (at most HISTORY_HZ samples a second)."""
        if not view.positions or now_s - self._last_s.get(view.robot_id, -1.0) < 1 / HISTORY_HZ:
            return
        self._last_s[view.robot_id] = now_s
        history = self._history.setdefault(view.robot_id, deque(maxlen=int(HISTORY_S * HISTORY_HZ)))
        history.append((now_s, list(view.positions), list(view.efforts)))

    def select(self, robot_id: str | None, index: JointIndex | None) -> None:
        """Show ``robot_id``'s panel (None hides it)."""
        self.selected = robot_id
        if self._chart is not None:
            self.plotter.remove_chart(self._chart)
            self._chart = None
            self._chart_lines = []
        if robot_id is None:
            return
        chart = pv.Chart2D(
            size=(0.34, 0.42), loc=(0.64, 0.05), x_label="s", y_label="fraction of limit"
        )
        chart.title = f"{robot_id}: position / range (solid), effort / rating (dashed)"
        chart.background_color = (1.0, 1.0, 1.0, 0.85)
        self._chart = chart
        self.plotter.add_chart(chart)
        log.info("selected %s; joint panel shown", robot_id)
        self.update(index)

    def update(self, index: JointIndex | None) -> None:
        """Redraw the lines from the selected robot's history."""
        chart, robot_id = self._chart, self.selected
        if chart is None or robot_id is None:
            return
        history = self._history.get(robot_id)
        if not history or index is None:
            return
        t = np.array([h[0] for h in history])
        positions = np.array([h[1] for h in history])
        efforts = np.abs(np.array([h[2] for h in history]))
        finite = np.isfinite(index.upper - index.lower)
        span = np.where(finite, index.upper - index.lower, 2 * math.pi)
        lower = np.where(np.isfinite(index.lower), index.lower, -math.pi)
        fraction = (positions - lower) / np.maximum(span, 1e-9)
        effort = np.clip(efforts / np.maximum(index.effort_limit, 1e-9), 0.0, 1.0)
        shown = [
            i for i, n in enumerate(index.names) if "knee" in n or "elbow" in n or "hip_pitch" in n
        ][:6]
        series = [fraction[:, j] for j in shown] + [effort[:, j] for j in shown]
        x = t - t[-1]
        if len(self._chart_lines) != len(series):
            chart.clear()
            self._chart_lines = [
                chart.line(x, fraction[:, j], color=_PALETTE[k % 6], label=index.names[j])
                for k, j in enumerate(shown)
            ] + [
                chart.line(x, effort[:, j], color=_PALETTE[k % 6], style="--")
                for k, j in enumerate(shown)
            ]
            chart.y_range = [0.0, 1.0]
        else:
            for line, values in zip(self._chart_lines, series, strict=True):
                line.update(x, values)
        chart.x_range = [-HISTORY_S, 0.0]
