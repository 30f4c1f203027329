"""Humanoid robot models of the training hall: URDFs, telemetry profiles, canonical skeleton.

Three fictional models (``kestrel_k1``, ``orca_h2``, ``tessel_t3``) are generated from compact
parametric specs (:mod:`robots.vendors`, ``python -m robots.generate``) and checked in under
``robots/urdf/``; ``pybullet_humanoid`` is pybullet_data's external humanoid. Use
:func:`get_model` to obtain a :class:`RobotModel`; joint names can be given in the vendor's
spelling or as canonical names from :data:`CANONICAL_JOINTS`.
"""

from robots.canonical import CANONICAL_JOINTS
from robots.models import RobotModel, UnknownModelError, get_model, model_names
from robots.profiles import TelemetryProfile
from robots.reader import JointInfo, UrdfError, parse_urdf

__all__ = [
    "CANONICAL_JOINTS",
    "JointInfo",
    "RobotModel",
    "TelemetryProfile",
    "UnknownModelError",
    "UrdfError",
    "get_model",
    "model_names",
    "parse_urdf",
]
