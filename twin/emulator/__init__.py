"""The hall emulator's physics and motion: a stand-in for the real hall's robots and cranes.

:class:`EmulatedHall` runs a scene in its own, slightly perturbed PyBullet world, every robot
doing its station task on a loop and every crane going round its waypoints; the emulator process
around it publishes :meth:`EmulatedHall.sample` and :meth:`EmulatedHall.crane_sample` in each
manufacturer's format.
"""

from twin.emulator.physics import (
    CraneSample,
    EmulatedHall,
    Perturbation,
    RobotSample,
    measure_step_cost,
)

__all__ = ["CraneSample", "EmulatedHall", "Perturbation", "RobotSample", "measure_step_cost"]
