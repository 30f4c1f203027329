"""The datasets' features: one per embodiment, and one pooled over the canonical skeleton.

**Per embodiment** (one model, ``<model>/``): the model's recorded joints in its own order,
named canonically (a vendor-only joint keeps the vendor's name, as the twin records it):
``observation.state`` (positions, rad or m), ``observation.velocity`` (rad/s or m/s),
``observation.effort`` (N·m or N), ``observation.base_pose`` (the pelvis in the hall frame:
x, y, z in m and the orientation quaternion qx, qy, qz, qw), ``observation.grip_closed``
(0 or 1, the gripper's report) and ``action`` (rad; see :mod:`twin.dataset.work`).

**Pooled** (``pooled/``, every manufacturer): the same features over the 32 canonical joints
in :data:`robots.CANONICAL_JOINTS` order, a joint the robot lacks written as 0 and masked out
by ``state_mask`` (True: the robot has it; outside ``observation.*``, which LeRobot's
normalisers take as float policy inputs); vendor-only joints (an Orca gripper's
``L_GRIP``) in ``observation.vendor_state`` / ``_velocity`` / ``_effort`` and
``vendor_action`` named ``<model>:<joint>`` with ``vendor_mask``, never dropped;
the gripper as ``observation.hands``. ``meta/modality.json`` names the state's body parts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from robots import CANONICAL_JOINTS
from twin.dataset.stats import KEYS, Stats, feature_stats
from twin.dataset.work import EpisodeData

BASE_NAMES: Final = ["x", "y", "z", "qx", "qy", "qz", "qw"]
_CANONICAL: Final = {name: i for i, name in enumerate(CANONICAL_JOINTS)}
BODY_PARTS: Final = {
    "left_leg": ("left_hip_yaw", "left_ankle_roll"),
    "right_leg": ("right_hip_yaw", "right_ankle_roll"),
    "spine": ("spine_yaw", "spine_pitch"),
    "neck": ("neck_yaw", "neck_roll"),
    "left_arm": ("left_shoulder_pitch", "left_wrist_roll"),
    "right_arm": ("right_shoulder_pitch", "right_wrist_roll"),
}
EPISODE_COLUMNS: Final[dict[str, pa.DataType]] = {
    "robot_id": pa.string(),
    "robot_type": pa.string(),
    "manufacturer": pa.string(),
    "model": pa.string(),
    "source_recording": pa.string(),
    "start_ns": pa.int64(),
    "end_ns": pa.int64(),
    "cycle": pa.int64(),
    "source": pa.string(),
    "complete": pa.bool_(),
    "success": pa.bool_(),
    "outcome": pa.string(),
    "failures": pa.list_(pa.string()),
    "incidents": pa.list_(pa.string()),
    "lessons": pa.list_(pa.string()),
    "action_source": pa.string(),
    "dispatch_id": pa.string(),
    "task_key": pa.string(),
}

Features = dict[str, dict[str, Any]]
Columns = dict[str, npt.NDArray[Any]]


def _vector(names: Sequence[str], dtype: str = "float32") -> dict[str, Any]:
    return {"dtype": dtype, "shape": [len(names)], "names": list(names)}


def model_features(names: Sequence[str]) -> Features:
    """One embodiment's features over its recorded joint ``names``."""
    return {
        "observation.state": _vector(names),
        "observation.velocity": _vector(names),
        "observation.effort": _vector(names),
        "observation.base_pose": _vector(BASE_NAMES),
        "observation.grip_closed": {"dtype": "float32", "shape": [1], "names": ["grip_closed"]},
        "action": _vector(names),
    }


def vendor_joints(names_by_model: Mapping[str, Sequence[str]]) -> list[str]:
    """The pooled vendor-only vocabulary: ``model:joint`` for every non-canonical joint."""
    return sorted(
        f"{model}:{name}"
        for model, names in names_by_model.items()
        for name in names
        if name not in _CANONICAL
    )


def pooled_features(vendor: Sequence[str]) -> Features:
    """The pooled dataset's features (the vendor features only when some robot has any)."""
    out: Features = {
        "observation.state": _vector(CANONICAL_JOINTS),
        "observation.velocity": _vector(CANONICAL_JOINTS),
        "observation.effort": _vector(CANONICAL_JOINTS),
        "state_mask": _vector(CANONICAL_JOINTS, "bool"),
        "observation.base_pose": _vector(BASE_NAMES),
        "observation.hands": {"dtype": "float32", "shape": [1], "names": ["grip_closed"]},
        "action": _vector(CANONICAL_JOINTS),
    }
    if vendor:
        out["observation.vendor_state"] = _vector(vendor)
        out["observation.vendor_velocity"] = _vector(vendor)
        out["observation.vendor_effort"] = _vector(vendor)
        out["vendor_mask"] = _vector(vendor, "bool")
        out["vendor_action"] = _vector(vendor)
    return out


def modality() -> dict[str, Any]:
    """``meta/modality.json`` (GR00T's layout): body-part slices ``[start, end)`` of the
    pooled state and action, each naming the feature it slices (``original_key``)."""

    def parts(key: str) -> dict[str, dict[str, Any]]:
        return {
            part: {"start": _CANONICAL[first], "end": _CANONICAL[last] + 1, "original_key": key}
            for part, (first, last) in BODY_PARTS.items()
        }

    state = parts("observation.state")
    state["hands"] = {"start": 0, "end": 1, "original_key": "observation.hands"}
    return {
        "state": state,
        "action": parts("action"),
        "annotation": {"human.task_description": {"original_key": "task_index"}},
    }


def model_columns(data: EpisodeData) -> Columns:
    """An episode's columns for its embodiment's dataset."""
    f = data.frames
    return {
        "observation.state": f.position.astype(np.float32),
        "observation.velocity": f.velocity.astype(np.float32),
        "observation.effort": f.effort.astype(np.float32),
        "observation.base_pose": f.base_pose.astype(np.float32),
        "observation.grip_closed": f.grip_closed.astype(np.float32),
        "action": data.action,
    }


def pooled_columns(data: EpisodeData, vendor: Sequence[str]) -> Columns:
    """An episode's columns for the pooled dataset (``vendor``: its vendor vocabulary)."""
    f = data.frames
    k = len(f)
    canonical = [(i, _CANONICAL[n]) for i, n in enumerate(data.names) if n in _CANONICAL]
    src = np.array([i for i, _ in canonical], dtype=np.int64)
    dst = np.array([j for _, j in canonical], dtype=np.int64)
    width = len(CANONICAL_JOINTS)

    def spread(values: npt.NDArray[Any], to: npt.NDArray[np.int64], frm: npt.NDArray[np.int64],
               size: int) -> npt.NDArray[np.float32]:  # fmt: skip
        out = np.zeros((k, size), dtype=np.float32)
        if len(to):
            out[:, to] = values[:, frm]
        return out

    mask = np.zeros((k, width), dtype=bool)
    mask[:, dst] = True
    columns: Columns = {
        "observation.state": spread(f.position, dst, src, width),
        "observation.velocity": spread(f.velocity, dst, src, width),
        "observation.effort": spread(f.effort, dst, src, width),
        "state_mask": mask,
        "observation.base_pose": f.base_pose.astype(np.float32),
        "observation.hands": f.grip_closed.astype(np.float32),
        "action": spread(data.action, dst, src, width),
    }
    if vendor:
        vsrc, vdst = _vendor_pairs(data, vendor)
        vmask = np.zeros((k, len(vendor)), dtype=bool)
        vmask[:, vdst] = True
        columns["observation.vendor_state"] = spread(f.position, vdst, vsrc, len(vendor))
        columns["observation.vendor_velocity"] = spread(f.velocity, vdst, vsrc, len(vendor))
        columns["observation.vendor_effort"] = spread(f.effort, vdst, vsrc, len(vendor))
        columns["vendor_mask"] = vmask
        columns["vendor_action"] = spread(data.action, vdst, vsrc, len(vendor))
    return columns


VECTOR_FEATURES: Final = (
    "observation.state",
    "observation.velocity",
    "observation.effort",
    "observation.base_pose",
    "action",
)


def model_stats(columns: Columns) -> dict[str, Stats]:
    """The statistics of an embodiment episode's vector features (the ones the pooled
    dataset's statistics are made of)."""
    return {key: feature_stats(columns[key]) for key in VECTOR_FEATURES}


def episode_stats(data: EpisodeData) -> dict[str, Stats]:
    """:func:`model_stats` of the episode's embodiment columns (for
    :func:`twin.dataset.work.run_unit` in a worker process)."""
    return model_stats(model_columns(data))


def _constant(value: float, count: int, width: int) -> Stats:
    """What :func:`feature_stats` gives for ``width`` columns of ``count`` frames all 0 or
    all 1 (exact: their sums are whole numbers)."""
    out = {key: np.full(width, value) for key in KEYS}
    out["std"] = np.zeros(width)
    out["count"] = np.array([count], dtype=np.float64)
    return out


def pooled_stats(
    data: EpisodeData, vendor: Sequence[str], model: Mapping[str, Stats]
) -> dict[str, Stats]:
    """The pooled episode's statistics of every vector feature, put together from its
    embodiment episode's (``model``, :func:`model_stats`) without going over the frames
    again: a column's statistics depend on its values alone (reduced along the frames of a
    two-dimensional array), a joint the robot lacks is a column of zeros, a mask column a
    constant 0 or 1. ``observation.hands`` and the default features are left to the writer."""
    k = len(data.frames)
    canonical = [(i, _CANONICAL[n]) for i, n in enumerate(data.names) if n in _CANONICAL]
    src = np.array([i for i, _ in canonical], dtype=np.int64)
    dst = np.array([j for _, j in canonical], dtype=np.int64)
    width = len(CANONICAL_JOINTS)

    def spread(
        stats: Stats, to: npt.NDArray[np.int64], frm: npt.NDArray[np.int64], size: int
    ) -> Stats:
        out = _constant(0.0, k, size)
        for key in KEYS:
            if key != "count" and len(to):
                out[key][to] = stats[key][frm]
        return out

    def mask(to: npt.NDArray[np.int64], size: int) -> Stats:
        out = _constant(0.0, k, size)
        for key in KEYS:
            if key not in ("count", "std"):
                out[key][to] = 1.0
        return out

    out = {
        "observation.state": spread(model["observation.state"], dst, src, width),
        "observation.velocity": spread(model["observation.velocity"], dst, src, width),
        "observation.effort": spread(model["observation.effort"], dst, src, width),
        "state_mask": mask(dst, width),
        "observation.base_pose": model["observation.base_pose"],
        "action": spread(model["action"], dst, src, width),
    }
    if vendor:
        vsrc, vdst = _vendor_pairs(data, vendor)
        size = len(vendor)
        out["observation.vendor_state"] = spread(model["observation.state"], vdst, vsrc, size)
        out["observation.vendor_velocity"] = spread(model["observation.velocity"], vdst, vsrc, size)
        out["observation.vendor_effort"] = spread(model["observation.effort"], vdst, vsrc, size)
        out["vendor_mask"] = mask(vdst, size)
        out["vendor_action"] = spread(model["action"], vdst, vsrc, size)
    return out


def _vendor_pairs(
    data: EpisodeData, vendor: Sequence[str]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The robot's vendor-only joints: their columns in its own order and in ``vendor``."""
    where = {name: i for i, name in enumerate(vendor)}
    pairs = [
        (i, where[f"{data.model}:{n}"])
        for i, n in enumerate(data.names)
        if n not in _CANONICAL and f"{data.model}:{n}" in where
    ]
    vsrc = np.array([i for i, _ in pairs], dtype=np.int64)
    vdst = np.array([j for _, j in pairs], dtype=np.int64)
    return vsrc, vdst


def episode_row(data: EpisodeData, recording: str) -> dict[str, Any]:
    """The extra columns of an episode's row in ``meta/episodes``."""
    e = data.episode
    return {
        "robot_id": e.robot_id,
        "robot_type": data.model,
        "manufacturer": data.manufacturer,
        "model": data.model,
        "source_recording": recording,
        "start_ns": int(data.frames.t_ns[0]),
        "end_ns": int(data.frames.t_ns[-1]),
        "cycle": e.cycle,
        "source": e.source,
        "complete": e.complete,
        "success": e.success,
        "outcome": e.outcome,
        "failures": list(e.failures),
        "incidents": list(e.incidents),
        "lessons": list(e.lessons),
        "action_source": data.action_source,
        "dispatch_id": e.dispatch_id,
        "task_key": e.task_key,
    }
