"""Facility layouts as data: the scene schema, its units, and a validating loader."""

from scenes.loader import DEFAULT_SCENE, Problem, SceneError, load_scene, parse_scene
from scenes.model import Bench, Crane, Hub, Item, Panel, Pose, Robot, Scene, Sensor, Station

__all__ = [
    "DEFAULT_SCENE",
    "Bench",
    "Crane",
    "Hub",
    "Item",
    "Panel",
    "Pose",
    "Problem",
    "Robot",
    "Scene",
    "SceneError",
    "Sensor",
    "Station",
    "load_scene",
    "parse_scene",
]
