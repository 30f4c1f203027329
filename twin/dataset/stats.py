"""Feature statistics as LeRobot v3 keeps them (``meta/stats.json`` and the episodes table).

Per feature and per dimension: ``min``, ``max``, ``mean``, ``std``, ``count`` and the
quantiles ``q01``, ``q10``, ``q50``, ``q90``, ``q99``. An episode's statistics are exact; a
dataset's are aggregated from its episodes as LeRobot's ``aggregate_stats`` does: min and
max of the parts, the count-weighted mean, the pooled variance (each part's variance plus
its squared distance from the pooled mean, weighted by count), and count-weighted means of
the parts' quantiles (an approximation LeRobot makes too; exact quantiles would need every
frame at once). Appending episodes therefore updates a dataset's statistics from the old
aggregate and the new episodes alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

QUANTILES: Final = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
KEYS: Final = ("min", "max", "mean", "std", "count", *QUANTILES)
_QS: Final = np.array(list(QUANTILES.values()))

Stats = dict[str, npt.NDArray[np.float64]]


def feature_stats(values: npt.ArrayLike) -> Stats:
    """Exact statistics of one feature's frames (rows: frames; a 1-D array: a scalar feature).
    Float32 frames (what the datasets hold) give the same numbers as their float64 copy, and
    are ordered in their own width, which is faster."""
    raw = np.asarray(values)
    if raw.dtype != np.float32:
        raw = np.asarray(raw, dtype=np.float64)  # no copy of float64 (numpy's min of
        # 0.0 and -0.0 depends on the memory layout)
    if raw.ndim == 1:
        raw = raw[:, None]
    data = np.asarray(raw, dtype=np.float64)
    out: Stats = {
        "min": data.min(axis=0),
        "max": data.max(axis=0),
        "mean": data.mean(axis=0),
        "std": data.std(axis=0),
        "count": np.array([len(data)], dtype=np.float64),
    }
    below, above, gamma = _neighbours(len(data), data.ndim)
    # the rows each quantile lies between, in place as a sort would put them: one partition
    # around all of them is a third of the time of a sort of the frames
    kth = np.unique(np.concatenate([below, above]) % max(1, len(data)))
    ordered = np.partition(raw, kth, axis=0) if len(data) else raw
    low, high = ordered[below].astype(np.float64), ordered[above].astype(np.float64)
    if np.isnan(out["max"]).any() or _zero_ties(data, low, high):
        # NaN sorts last; 0.0 and -0.0 are equals that numpy's partition and sort (with
        # min/max steps) place, or even copy, each in its own way: those go to numpy
        quantiles = np.quantile(data, _QS, axis=0)
    else:
        quantiles = _lerp(low, high, gamma)
    for key, row in zip(QUANTILES, quantiles, strict=True):
        out[key] = row
    return out


def _neighbours(
    count: int, ndim: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """The sorted rows each quantile lies between and its weight, as ``np.quantile``
    (method "linear") takes them: both neighbours the last row at or past the end, the
    weight measured from the index it was given (shaped to broadcast over the columns).
    One partition of the frames around all of them is cheaper than the partitions numpy
    makes for every call (they were two thirds of an episode's statistics)."""
    virtual = (count - 1) * _QS
    below = np.floor(virtual)
    above = below + 1
    last = virtual >= count - 1
    below[last] = -1
    above[last] = -1
    gamma = (virtual - below).reshape(-1, *(1,) * (ndim - 1))
    return below.astype(np.intp), above.astype(np.intp), gamma


def _lerp(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], gamma: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """numpy's quantile interpolation, step for step (from the nearer neighbour): the
    values bit for bit what ``np.quantile`` gives."""
    diff = b - a
    out: npt.NDArray[np.float64] = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5)
    return out


def _zero_ties(
    data: npt.NDArray[np.float64], a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]
) -> bool:
    """Whether a quantile's neighbour is a zero in a column holding both 0.0 and -0.0."""
    touched = ((a == 0) | (b == 0)).any(axis=0)
    if not touched.any():
        return False
    columns = data[:, touched]
    zeros = columns == 0
    negative = zeros & np.signbit(columns)
    return bool((negative.any(axis=0) & (zeros & ~negative).any(axis=0)).any())


def aggregate(parts: Sequence[Stats]) -> Stats:
    """One feature's statistics over several parts (episodes, or an old aggregate and new
    episodes), as the module docstring says."""
    parts = [p for p in parts if float(p["count"][0]) > 0]
    if not parts:
        raise ValueError("no statistics to aggregate")
    counts = np.array([float(p["count"][0]) for p in parts])
    weights = counts / counts.sum()
    means = np.stack([p["mean"] for p in parts])
    mean = np.einsum("i,ij->j", weights, means)
    variances = np.stack([p["std"] ** 2 for p in parts]) + (means - mean) ** 2
    out: Stats = {
        "min": np.min(np.stack([p["min"] for p in parts]), axis=0),
        "max": np.max(np.stack([p["max"] for p in parts]), axis=0),
        "mean": mean,
        "std": np.sqrt(np.einsum("i,ij->j", weights, variances)),
        "count": np.array([counts.sum()]),
    }
    for key in QUANTILES:
        out[key] = np.einsum("i,ij->j", weights, np.stack([p[key] for p in parts]))
    return out


def aggregate_all(parts: Sequence[Mapping[str, Stats]]) -> dict[str, Stats]:
    """:func:`aggregate` for every feature the parts share."""
    features = set(parts[0]) if parts else set()
    for part in parts[1:]:
        features &= set(part)
    return {f: aggregate([p[f] for p in parts]) for f in sorted(features)}


def to_json(stats: Mapping[str, Stats]) -> dict[str, dict[str, list[Any]]]:
    """``meta/stats.json``'s shape: feature -> statistic -> list (``count`` as integers)."""
    out: dict[str, dict[str, list[Any]]] = {}
    for feature, values in stats.items():
        out[feature] = {
            key: ([int(v) for v in values[key]] if key == "count" else values[key].tolist())
            for key in KEYS
        }
    return out


def from_json(data: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, Stats]:
    """Statistics read back from ``meta/stats.json`` (features lacking a key are skipped)."""
    out: dict[str, Stats] = {}
    for feature, values in data.items():
        if all(key in values for key in KEYS):
            out[feature] = {key: np.asarray(values[key], dtype=np.float64) for key in KEYS}
    return out
