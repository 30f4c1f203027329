"""Resampling a robot's recorded series onto a dataset's fixed frame rate.

The method (also written into each dataset's ``meta/info.json``):

* frame ``k`` of an episode is at ``start + k / fps``; frames run while the joint states cover
  the instant (the first and last recorded state bound an episode);
* joint positions, velocities and efforts are **linearly interpolated** between the two
  recorded states around the frame's instant, on the robot's own stamps (moved onto the
  twin's clock by the median receive delay, so bursts of arrival do not bend the time axis);
* the base position is linearly interpolated between recorded base poses, the orientation
  by normalised linear interpolation of the quaternions (the shorter way round), which for
  poses 10 ms apart differs from slerp by far less than a float32's resolution;
* heartbeat fields (grip closed, mode) hold the latest heartbeat at or before the frame (the
  first heartbeat's, for frames before it).

A linearly interpolated value therefore lies between its two neighbouring recorded samples,
and equals the recorded value where a frame falls on a sample; that is the tolerance a test
or a user can hold an export to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from twin.dataset.source import Arrays

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

METHOD: Final = (
    "joint positions, velocities, efforts and base position: linear interpolation between the "
    "two recorded samples around each frame, on the robot's own stamps shifted onto the twin's "
    "clock by the median receive delay; base orientation: normalised linear interpolation of "
    "the quaternions (shorter arc); heartbeat fields (grip, mode): the latest heartbeat at or "
    "before the frame (the first one before it)"
)
MODES: Final = ("idle", "running", "stopped", "fault", "shutdown")


ValueArray = npt.NDArray[np.float64] | npt.NDArray[np.float32]


@dataclass
class Frames:
    """An episode's frames: instants (ns, twin clock) and the resampled values (float64 as
    resampled; float32, what the datasets hold, once :meth:`narrowed`)."""

    t_ns: IntArray
    position: ValueArray  # (k, n) in the series' joint order
    velocity: ValueArray
    effort: ValueArray
    base_pose: ValueArray  # (k, 7): x, y, z, qx, qy, qz, qw
    grip_closed: ValueArray  # (k,) 0 or 1
    running: npt.NDArray[np.bool_]  # (k,) the heartbeat said mode 'running'

    def __len__(self) -> int:
        return len(self.t_ns)

    def narrowed(self) -> Frames:
        """The values as float32, as the datasets write them (half the bytes to hand from a
        worker process to the writing one; the columns come out the same)."""
        return Frames(
            self.t_ns, self.position.astype(np.float32), self.velocity.astype(np.float32),
            self.effort.astype(np.float32), self.base_pose.astype(np.float32),
            self.grip_closed.astype(np.float32), self.running,
        )  # fmt: skip


def grid(start_ns: int, end_ns: int, fps: float) -> IntArray:
    """Frame instants from ``start_ns`` every ``1/fps`` up to ``end_ns`` (inclusive)."""
    if end_ns < start_ns:
        return np.zeros(0, dtype=np.int64)
    step_ns = 1e9 / fps
    count = int((end_ns - start_ns) // step_ns) + 1
    return start_ns + np.round(np.arange(count) * step_ns).astype(np.int64)


def _weights(times: IntArray, at: IntArray) -> tuple[IntArray, FloatArray]:
    """Left neighbour indices and interpolation weights of ``at`` among ``times``."""
    right = np.searchsorted(times, at, side="right")
    left = np.clip(right - 1, 0, len(times) - 1)
    nxt = np.clip(right, 0, len(times) - 1)
    span = (times[nxt] - times[left]).astype(np.float64)
    w = np.divide(
        (at - times[left]).astype(np.float64), span, out=np.zeros(len(at)), where=span > 0
    )
    return left, np.clip(w, 0.0, 1.0)


def linear(times: IntArray, values: FloatArray, at: IntArray) -> FloatArray:
    """``values`` (rows at ``times``) linearly interpolated at ``at`` (clamped at the ends)."""
    if len(times) == 0:
        return np.zeros((len(at), values.shape[1] if values.ndim == 2 else 0))
    left, w = _weights(times, at)
    nxt = np.clip(left + 1, 0, len(times) - 1)
    return values[left] * (1.0 - w)[:, None] + values[nxt] * w[:, None]


def nlerp(times: IntArray, quats: FloatArray, at: IntArray) -> FloatArray:
    """Quaternions (x, y, z, w rows) interpolated the shorter way round, normalised."""
    left, w = _weights(times, at)
    nxt = np.clip(left + 1, 0, len(times) - 1)
    a, b = quats[left], quats[nxt].copy()
    flip = np.sum(a * b, axis=1) < 0.0
    b[flip] *= -1.0
    q = a * (1.0 - w)[:, None] + b * w[:, None]
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    out: FloatArray = np.tile([0.0, 0.0, 0.0, 1.0], (len(q), 1))
    np.divide(q, norm, out=out, where=norm > 0)
    return out


def hold(times: IntArray, at: IntArray) -> IntArray:
    """Index of the latest sample at or before each instant (-1: none yet)."""
    return np.searchsorted(times, at, side="right") - 1


def resample(series: Arrays, start_ns: int, end_ns: int, fps: float) -> Frames:
    """The robot's frames from ``start_ns`` to ``end_ns`` (clipped to its joint states)."""
    t = series.joint_t_ns
    if len(t) == 0:
        return _empty(len(series.names))
    start_ns = max(start_ns, int(t[0]))
    end_ns = min(end_ns, int(t[-1]))
    at = grid(start_ns, end_ns, fps)
    if len(at) == 0:
        return _empty(len(series.names))
    left, w = _weights(t, at)
    nxt = np.clip(left + 1, 0, len(t) - 1)
    # decode each needed recorded state once (a frame on a sample needs only that one)
    need = np.unique(np.concatenate([left, nxt[w > 0]]))
    pos, vel, eff = series.joint_rows(need)
    li, ni = np.searchsorted(need, left), np.searchsorted(need, np.where(w > 0, nxt, left))
    wc = w[:, None]
    position = pos[li] * (1.0 - wc) + pos[ni] * wc
    velocity = vel[li] * (1.0 - wc) + vel[ni] * wc
    effort = eff[li] * (1.0 - wc) + eff[ni] * wc
    if len(series.base_t_ns):
        bt = series.base_t_ns
        b_left, _ = _weights(bt, at)
        b_need = np.unique(np.concatenate([b_left, np.clip(b_left + 1, 0, len(bt) - 1)]))
        poses = series.base_rows(b_need)
        xyz = linear(bt[b_need], poses[:, :3], at)
        quat = nlerp(bt[b_need], poses[:, 3:], at)
        base = np.hstack([xyz, quat])
    else:
        base = np.tile([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], (len(at), 1))
    grip = np.zeros(len(at))
    running = np.zeros(len(at), dtype=bool)
    if series.beats:
        # before the first heartbeat, the first one's word holds
        index = np.maximum(hold(series.beat_t_ns, at), 0)
        grip = series.beat_grip[index]
        running = series.beat_running[index]
    return Frames(at, position, velocity, effort, base, grip, running)


def _empty(width: int) -> Frames:
    zeros = np.zeros((0, width))
    return Frames(
        np.zeros(0, dtype=np.int64), zeros, zeros, zeros, np.zeros((0, 7)), np.zeros(0),
        np.zeros(0, dtype=bool),
    )  # fmt: skip


def source_rate_hz(series: Arrays) -> float:
    """The robot's joint-state rate: the inverse of the median interval between its stamps."""
    if len(series.joint_t_ns) < 2:
        return 0.0
    median_ns = float(np.median(np.diff(series.joint_t_ns)))
    return 1e9 / median_ns if median_ns > 0 else 0.0
