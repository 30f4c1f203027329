"""The twin: owns PyBullet. Its rooms, from the bottom up (docs/architecture.md):

``world`` (the PyBullet hall), ``plan`` (task plans), ``record`` (recordings written and
read), ``failures`` (detectors), ``live`` (the mirror), ``preview`` and ``emulator`` (task
preview; the emulated hall), ``dispatch`` (the gate), and ``cli`` on top (the ``twin``
command, the only room that wires ``viz`` in). This face re-exports the world for
``from twin import World``.
"""

from twin.world.crane import CraneLimitError
from twin.world.world import Contact, Ref, UnknownNameError, World

__all__ = ["Contact", "CraneLimitError", "Ref", "UnknownNameError", "World"]
