"""The twin: owns PyBullet. Builds the world from a scene and wires the command line."""

from twin.crane import CraneLimitError
from twin.world import Contact, Ref, UnknownNameError, World

__all__ = ["Contact", "CraneLimitError", "Ref", "UnknownNameError", "World"]
