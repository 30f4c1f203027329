"""The hall emulator (``twin emulate``): a stand-in for the real hall's robots and cranes.

:class:`EmulatedHall` runs a scene in its own, slightly perturbed PyBullet world, every robot
doing its station task on a loop and every crane going round its waypoints; the emulator process
around it publishes :meth:`EmulatedHall.sample` and :meth:`EmulatedHall.crane_sample` in each
manufacturer's format (``emulate.py``, with ``faults.py`` and ``timeline.py`` for injected
faults and incidents, ``commands.py`` for dispatched plans). ``resim.py`` re-simulates a
recording from an instant in the same physics (``twin resim``).
"""

from twin.emulator.physics import (
    CraneSample,
    EmulatedHall,
    Perturbation,
    RobotSample,
    measure_step_cost,
)

__all__ = ["CraneSample", "EmulatedHall", "Perturbation", "RobotSample", "measure_step_cost"]
