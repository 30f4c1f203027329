"""Humanoid robot models of the training hall: packages, URDFs, profiles, canonical skeleton.

Every model is a package: a folder with its URDF, meshes and a ``robot.yaml``
(:mod:`robots.package`, docs/adding-a-robot.md). The built-in ones live in ``robots/<model>/``:
three fictional models (``kestrel_k1``, ``orca_h2``, ``tessel_t3``) generated from compact
parametric specs (:mod:`robots.vendors`, ``python -m robots.generate``) and
``pybullet_humanoid``, pybullet_data's humanoid. More are found on the models path
(:mod:`robots.library`: ``HALL_TWIN_ROBOTS``, ``twin --robots-dir``, a scene's
``robot_dirs``). Use :func:`get_model` to obtain a :class:`RobotModel`; joint names can be
given in the vendor's spelling or as canonical names from :data:`CANONICAL_JOINTS`.
"""

from robots.canonical import CANONICAL_JOINTS
from robots.library import add_model_dirs, find_models, get_model, model_names
from robots.models import RobotModel, UnknownModelError
from robots.package import PackageError
from robots.profiles import TelemetryProfile
from robots.reader import JointInfo, UrdfError, parse_urdf

__all__ = [
    "CANONICAL_JOINTS",
    "JointInfo",
    "PackageError",
    "RobotModel",
    "TelemetryProfile",
    "UnknownModelError",
    "UrdfError",
    "add_model_dirs",
    "find_models",
    "get_model",
    "model_names",
    "parse_urdf",
]
