"""What ``twin preview --report DIR`` writes besides the JSON: plots and a recording.

* ``joint_margins.png``: the worst joint-limit fraction and effort fraction over time, with the
  task's limits; ``clearance.png``: the distance to the nearest other body over time;
  ``balance.png``: the support force (fraction of the robot's weight), the ZMP and centre-of-mass
  margins inside the feet, and each foot's floor force over time.
* ``preview.mcap``: the preview as a recording :mod:`twin.cli.replay` opens (``twin replay
  DIR/preview.mcap``): the previewed robot's joint states at its telemetry rate, base pose at
  100 Hz, heartbeats at 10 Hz, the other robots standing at their stations, cranes at 20 Hz, and
  every failure reason as an event; written with :class:`twin.record.recorder.Recorder` like a live
  recording, stamped from the preview's start.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Final

import matplotlib
import numpy as np

from robots import get_model
from robots.bullet import pb
from scenes.model import Scene
from sync.codecs import VendorCodec, codec_for
from sync.protocol import (
    BaseState,
    CraneState,
    Heartbeat,
    Kind,
    Received,
    encode_payload,
    pack_header,
    topic,
    unpack_header,
)
from twin.preview.engine import PreviewResult
from twin.preview.hall import PreviewHall
from twin.record.foxglove_channels import DISPLAY_HZ as FOXGLOVE_DISPLAY_HZ
from twin.record.recorder import Recorder

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the off-screen backend

log = logging.getLogger(__name__)

BASE_RATE_HZ: Final = 100.0
HEARTBEAT_RATE_HZ: Final = 10.0
CRANE_RATE_HZ: Final = 20.0
OTHERS_RATE_HZ: Final = 10.0
_NS: Final = 1_000_000_000


def twin_version() -> str:
    """The installed package's version."""
    try:
        return version("hall-twin")
    except PackageNotFoundError:  # pragma: no cover - not installed
        return "unknown"


def write_plots(result: PreviewResult, limits: dict[str, float], out_dir: Path) -> list[Path]:
    """The PNGs (see the module docstring); returns their paths."""
    series = result.series
    t = np.array(series.get("t_s", []))
    paths = []
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(t, series.get("joint_limit_fraction", []), label="joint limit fraction (worst joint)")
    ax.plot(t, series.get("effort_fraction", []), label="effort fraction (worst joint)")
    ax.axhline(limits["max_joint_limit_fraction"], color="C0", linestyle="--", linewidth=0.8)
    ax.axhline(limits["max_effort_fraction"], color="C1", linestyle="--", linewidth=0.8)
    for reason in result.reasons:
        ax.axvline(reason.time_s, color="red", alpha=0.3, linewidth=0.8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("fraction of limit")
    ax.set_title(f"{result.task} ({result.robot}): joint margins")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "joint_margins.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.plot(t, series.get("clearance_m", []), label="nearest other body (m)")
    ax.axhline(limits["min_clearance_m"], color="red", linestyle="--", linewidth=0.8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("clearance (m)")
    ax.set_title(f"{result.task} ({result.robot}): clearance")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "clearance.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    paths.append(_balance_plot(result, out_dir / "balance.png"))
    return paths


def _balance_plot(result: PreviewResult, path: Path) -> Path:
    """Support force, ZMP and CoM margins, and each foot's floor force over time."""
    b = result.balance_series
    t = np.array(b.get("t_s", []))
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    top.plot(t, b.get("support_fraction", []), label="support force (fraction of weight)")
    top.axhline(0.10, color="red", linestyle="--", linewidth=0.8, label="10 % (outside walks)")
    top.set_ylabel("fraction of weight")
    top.legend(loc="upper right", fontsize=8)
    middle.plot(t, b.get("zmp_margin_m", []), label="ZMP margin (m)")
    middle.plot(t, b.get("com_margin_m", []), label="CoM margin (m)")
    middle.axhline(0.0, color="red", linestyle="--", linewidth=0.8)
    middle.set_ylabel("inside the feet (m)")
    middle.legend(loc="upper right", fontsize=8)
    for foot, forces in b.get("foot_force_n", {}).items():
        bottom.plot(t, forces, label=f"{foot} (N)")
    bottom.set_ylabel("floor force (N)")
    bottom.set_xlabel("time (s)")
    bottom.legend(loc="upper right", fontsize=8)
    for ax in (top, middle, bottom):
        for reason in result.reasons:
            if reason.kind == "balance":
                ax.axvline(reason.time_s, color="red", alpha=0.3, linewidth=0.8)
    how = "on its own feet" if result.own_feet else "carried by the stabilised base"
    top.set_title(f"{result.task} ({result.robot}): balance, {how}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class PreviewRecorder:
    """An engine observer writing the preview into an MCAP recording (module docstring)."""

    def __init__(self, path: Path, scene: Scene, scene_text: str, robot_id: str) -> None:
        self.scene = scene
        self.robot_id = robot_id
        self.start_ns = time.time_ns()
        self.recorder = Recorder(
            path, scene, scene_text, twin_version=twin_version(), start_ns=self.start_ns,
            display_hz=FOXGLOVE_DISPLAY_HZ,
        )  # fmt: skip
        self.epoch = zlib.crc32(f"preview:{robot_id}".encode()) or 1
        self.codecs: dict[str, VendorCodec] = {
            r.id: codec_for(get_model(r.model)) for r in scene.robots
        }
        self.rates: dict[tuple[Kind, str], float] = {}
        for robot in scene.robots:
            rate = get_model(robot.model).profile.rate_hz
            joint_rate = rate if robot.id == robot_id else min(rate, OTHERS_RATE_HZ)
            self.rates[(Kind.JOINT_STATE, robot.id)] = joint_rate
            self.rates[(Kind.BASE, robot.id)] = min(BASE_RATE_HZ, joint_rate)
            self.rates[(Kind.HEARTBEAT, robot.id)] = HEARTBEAT_RATE_HZ
        for crane in scene.cranes:
            self.rates[(Kind.CRANE, crane.id)] = CRANE_RATE_HZ
        self.next_ns = dict.fromkeys(self.rates, 0)
        self.seq = dict.fromkeys(self.rates, 0)

    def __call__(self, t_s: float, hall: PreviewHall) -> None:
        t_ns = round(t_s * _NS)
        for key, rate in self.rates.items():
            if t_ns < self.next_ns[key]:
                continue
            self.next_ns[key] = t_ns + round(_NS / rate)
            payload = self._payload(key[0], key[1], hall)
            seq = self.seq[key]
            self.seq[key] = seq + 1
            stamp = self.start_ns + t_ns
            header = unpack_header(pack_header(key[0], seq, stamp, self.epoch))
            self.recorder.sink(Received(stamp, key[1], header, topic(key[0], key[1]), payload))

    def _payload(self, kind: Kind, source: str, hall: PreviewHall) -> bytes:
        client = hall.client
        if kind == Kind.CRANE:
            axes = hall.world.crane_positions(source)
            return encode_payload(CraneState(axes["bridge"], axes["trolley"], axes["hoist"], False))
        model = get_model(self.scene.robot(source).model)
        if kind == Kind.HEARTBEAT:
            return encode_payload(
                Heartbeat("running", False, False, model.manufacturer, model.name, "preview")
            )
        names = model.profile.joint_names
        if source == self.robot_id:
            indices = [hall.joint_index[n] for n in names]
            states = pb.getJointStates(hall.body, indices, physicsClientId=client)
            positions = np.array([s[0] for s in states])
            velocities = np.array([s[1] for s in states])
            efforts = np.array([s[3] for s in states])
            pos, orn = pb.getBasePositionAndOrientation(hall.body, physicsClientId=client)
            lin, ang = pb.getBaseVelocity(hall.body, physicsClientId=client)
        else:
            positions = velocities = efforts = np.zeros(len(names))
            station = self.scene.station(self.scene.robot(source).station)
            pos = (*station.pose.xyz[:2], station.pose.xyz[2] + model.base_height_m)
            yaw = station.pose.yaw_rad
            orn = (0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0))
            lin = ang = (0.0, 0.0, 0.0)
        if kind == Kind.JOINT_STATE:
            return self.codecs[source].encode(positions, velocities, efforts)
        return encode_payload(
            BaseState(
                (float(pos[0]), float(pos[1]), float(pos[2])),
                (float(orn[0]), float(orn[1]), float(orn[2]), float(orn[3])),
                (float(lin[0]), float(lin[1]), float(lin[2])),
                (float(ang[0]), float(ang[1]), float(ang[2])),
                (0.0, 0.0, 9.81),
            )
        )

    def finish(self, result: PreviewResult) -> None:
        """Every failure reason as an event, then close the file."""
        for reason in result.reasons:
            stamp = self.start_ns + round(reason.time_s * _NS)
            self.recorder.event(f"preview:{reason.kind}", self.robot_id, reason.detail, stamp)
        self.recorder.close()
