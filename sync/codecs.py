"""Vendor adapters: each manufacturer's joint-state payload to canonical SI arrays and back.

Encodings (``TelemetryProfile.encoding``), all in the profile's wire order of N joints:

- ``packed_f32``: 3N little-endian float32: positions, then velocities, then efforts
  (rad, rad/s, N*m; m, m/s, N for prismatic joints).
- ``packed_deg_f64``: 3N little-endian float64, same order; rotational joints in degrees
  and degrees per second.
- ``map``: a MessagePack map ``{vendor joint name: [position, velocity, effort]}``
  (self-describing; every joint exactly once; units as the profile says).

Decoding refuses a payload of the wrong size, unknown or missing joints, and
non-finite values (FrameError) rather than guessing. The packed encodings have a fixed
layout (``VendorCodec.packed``), so the twin's ingest checks a whole batch of them with
one numpy pass (:func:`finite_rows`) and views a payload as an array only when it is used
(:meth:`VendorCodec.view`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

import msgspec
import numpy as np
from numpy.typing import NDArray

from robots import RobotModel
from sync import msgpack_layout as mp
from sync.protocol import MAX_PAYLOAD_BYTES, FrameError

Array = NDArray[np.float64]

_PACKED_DTYPES: Final = {"packed_f32": "<f4", "packed_deg_f64": "<f8"}
_MAP_DECODER: Final = msgspec.msgpack.Decoder(dict[str, tuple[float, float, float]])
_MAX_PLANS: Final = 64  # payload sizes whose bulk layout a codec keeps
_ENCODER: Final = msgspec.msgpack.Encoder()


@dataclass(frozen=True)
class JointSample:
    """One joint-state message in SI units, in the profile's wire (vendor) order."""

    positions: Array
    velocities: Array
    efforts: Array


@dataclass
class VendorCodec:
    """Encoder/decoder of one model's joint-state payloads."""

    model: RobotModel
    names: tuple[str, ...] = field(init=False)
    canonical_names: tuple[str, ...] = field(init=False)
    _scale: Array = field(init=False, repr=False)  # wire unit -> SI, per joint
    _index: dict[str, int] = field(init=False, repr=False)
    packed: tuple[str, int] | None = field(init=False)
    """(numpy dtype, payload bytes) of a fixed-layout encoding; None for ``map``."""
    _plans: dict[int, mp.Plan | None] = field(init=False, repr=False)  # map size -> bulk read

    def __post_init__(self) -> None:
        spherical = [j.name for j in self.model.joints if j.kind == "spherical"]
        if spherical:
            raise ValueError(
                f"{self.model.name}: spherical joints ({', '.join(spherical[:3])}...) carry a "
                "quaternion each; the telemetry encodings carry one value per joint"
            )
        profile = self.model.profile
        self.names = profile.joint_names
        self.canonical_names = tuple(profile.canonical_name(n) for n in self.names)
        degrees = profile.position_unit == "deg"
        self._scale = np.array(
            [
                math.pi / 180.0 if degrees and self.model.joint(n).kind != "prismatic" else 1.0
                for n in self.names
            ],
            dtype=np.float64,
        )
        self._index = {n: i for i, n in enumerate(self.names)}
        self._plans = {}
        dtype = _PACKED_DTYPES.get(profile.encoding)
        self.packed = (
            (dtype, 3 * len(self.names) * np.dtype(dtype).itemsize) if dtype is not None else None
        )

    @property
    def encoding(self) -> str:
        """The profile's encoding name."""
        return self.model.profile.encoding

    def encode(self, positions: Array, velocities: Array, efforts: Array) -> bytes:
        """SI arrays in wire order -> the vendor's payload bytes."""
        n = len(self.names)
        if not (len(positions) == len(velocities) == len(efforts) == n):
            raise ValueError(f"{self.model.name}: expected {n} values per array")
        pos = np.asarray(positions, dtype=np.float64) / self._scale
        vel = np.asarray(velocities, dtype=np.float64) / self._scale
        eff = np.asarray(efforts, dtype=np.float64)
        encoding = self.encoding
        if encoding == "packed_f32":
            return np.concatenate((pos, vel, eff)).astype("<f4").tobytes()
        if encoding == "packed_deg_f64":
            return np.concatenate((pos, vel, eff)).astype("<f8").tobytes()
        return _ENCODER.encode(
            {
                name: (float(pos[i]), float(vel[i]), float(eff[i]))
                for i, name in enumerate(self.names)
            }
        )

    def decode(self, payload: bytes) -> JointSample:
        """The vendor's payload bytes -> SI arrays in wire order (FrameError if malformed)."""
        return self.to_sample(self.check(payload))

    def to_sample(self, raw: Array | NDArray[np.float32]) -> JointSample:
        """Checked wire values (shape (3, N), from :meth:`check`) -> SI arrays."""
        return JointSample(
            positions=raw[0] * self._scale,
            velocities=raw[1] * self._scale,
            efforts=raw[2].astype(np.float64),
        )

    def view(self, payload: bytes) -> Array | NDArray[np.float32]:
        """A payload of a packed encoding that was checked already (its size by the
        caller, its values by :func:`finite_rows`) as wire values, shape (3, N), no copy."""
        if self.packed is None:
            raise ValueError(f"{self.model.name}: {self.encoding} has no fixed layout")
        values: Array | NDArray[np.float32] = np.frombuffer(payload, dtype=self.packed[0])
        return values.reshape(3, len(self.names))

    def check(self, payload: bytes) -> Array | NDArray[np.float32]:
        """Validate a payload; return its values in wire units, shape (3, N), without copying.

        The cheap half of :meth:`decode`, done for every message on arrival; the unit
        conversion (:meth:`to_sample`) is left for the messages that are applied.
        """
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise FrameError(
                "oversized", f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}"
            )
        n = len(self.names)
        encoding = self.encoding
        if encoding in ("packed_f32", "packed_deg_f64"):
            dtype = "<f4" if encoding == "packed_f32" else "<f8"
            expected = 3 * n * np.dtype(dtype).itemsize
            if len(payload) != expected:
                raise FrameError(
                    "bad_payload",
                    f"{self.model.name} {encoding}: {len(payload)} bytes, expected {expected} "
                    f"({n} joints x 3 values)",
                )
            values: Array | NDArray[np.float32] = np.frombuffer(payload, dtype=dtype).reshape(3, n)
        else:
            values = self._decode_map(payload)
        if not np.isfinite(values).all():
            raise FrameError("bad_payload", f"{self.model.name}: non-finite joint value")
        return values

    def _decode_map(self, payload: bytes) -> Array:
        try:
            entries = _MAP_DECODER.decode(payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise FrameError("bad_payload", f"{self.model.name} map: {exc}") from None
        except RecursionError:
            raise FrameError("bad_payload", f"{self.model.name} map: nested too deeply") from None
        rows: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] * len(self.names)
        index_of = self._index
        for name, triple in entries.items():
            index = index_of.get(name)
            if index is None:
                raise FrameError("bad_payload", f"{self.model.name} map: unknown joint {name!r}")
            rows[index] = triple
        if len(entries) != len(self.names):  # names are unique and known: so some are missing
            missing = sorted(set(self.names) - set(entries))
            raise FrameError("bad_payload", f"{self.model.name} map: missing joints {missing[:5]}")
        # one conversion of the (N, 3) rows, instead of a numpy assignment per joint
        values: Array = np.ascontiguousarray(np.array(rows, dtype=np.float64).T)
        return values

    def accepted_values(self, payloads: list[bytes]) -> Array:
        """The wire values of payloads :meth:`check` accepted already, shape (n, 3, N), in one
        pass: one ``np.frombuffer`` for the packed encodings; for the maps, those of one
        layout (the same keys in the same order, as a vendor's encoder writes them) read
        together through :mod:`sync.msgpack_layout`, any other one by :meth:`check`
        (FrameError if it is not as ingest left it)."""
        n, joints = len(payloads), len(self.names)
        if self.packed is not None:
            values = np.frombuffer(b"".join(payloads), dtype=self.packed[0])
            if values.size != n * 3 * joints:
                raise FrameError("bad_payload", f"{self.model.name}: payloads of other sizes")
            return values.reshape(n, 3, joints).astype(np.float64)
        out = np.empty((n, 3, joints), dtype=np.float64)
        done = np.zeros(n, dtype=bool)
        sizes = np.fromiter(map(len, payloads), dtype=np.int64, count=n)
        for size in np.unique(sizes).tolist():
            at = np.flatnonzero(sizes == size)
            how = self._layout_plan(payloads[int(at[0])])
            if how is None:
                continue
            rows = np.frombuffer(b"".join([payloads[i] for i in at.tolist()]), dtype=np.uint8)
            same, values = mp.extract(rows.reshape(len(at), size), how)
            out[at[same]] = values[same].reshape(-1, 3, joints)
            done[at[same]] = True
        for i in np.flatnonzero(~done).tolist():  # another shape: read on its own
            out[i] = self.check(payloads[i])
        return out

    def _layout_plan(self, payload: bytes) -> mp.Plan | None:
        """How to read a map of this payload's size in bulk (its layout, if it holds exactly
        the joints' three numbers each), from the first such payload; None: not in bulk."""
        size = len(payload)
        if size in self._plans:
            return self._plans[size]
        how = None
        layout = mp.layout_of(payload)
        paths: list[mp.Path] = [(name, k) for k in range(3) for name in self.names]
        if layout is not None and set(layout.leaves) == set(paths):
            how = mp.plan(layout, paths)
        if len(self._plans) < _MAX_PLANS:
            self._plans[size] = how
        return how


def finite_rows(payloads: list[bytes], dtype: str) -> list[bool]:
    """For payloads of one packed layout (``dtype``, all of one size): is every value of
    each finite? One numpy pass for the lot, instead of one per payload."""
    values = np.frombuffer(b"".join(payloads), dtype=dtype).reshape(len(payloads), -1)
    found: list[bool] = np.isfinite(values).all(axis=1).tolist()
    return found


_CODECS: dict[str, VendorCodec] = {}


def codec_for(model: RobotModel) -> VendorCodec:
    """The (cached) codec of a model."""
    codec = _CODECS.get(model.name)
    if codec is None:
        codec = _CODECS[model.name] = VendorCodec(model)
    return codec
