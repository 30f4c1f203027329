"""The hall emulator: the stand-in for real hardware, publishing over the real protocol.

It runs its own physics (:class:`twin.emulator.physics.EmulatedHall`: a perturbed
reality where each robot performs its task), and for every robot a gateway that
publishes that robot's telemetry in its manufacturer's own format and rate: joint
states at the profile rate, base pose + IMU at 100 Hz (or the profile rate if lower),
heartbeats at 10 Hz; cranes at 20 Hz. Each gateway has its own socket, epoch and
clock skew, and adds sensor noise. Faults (:mod:`twin.emulator.faults`) are injected per robot
(the timed ones and random incidents by :mod:`twin.emulator.timeline`).
With a key directory the gateways also take commands from the twin's command channel and
execute dispatched plans (:mod:`twin.emulator.commands`).

Joint states are sampled from the newest physics step (240 Hz); a 500 Hz stream thus
repeats a physics state about every other message, stamped at its own send time.
"""

from __future__ import annotations

import heapq
import json
import logging
import random
import threading
import time
from pathlib import Path
from typing import Any, Final

import numpy as np
import zmq

from robots import get_model
from scenes.model import Scene
from sync.addresses import DEFAULT_COMMAND
from sync.codecs import codec_for
from sync.gateway import Gateway
from sync.keys import KeyDirError, KeyPair, gateway_keys, server_public_key
from sync.protocol import (
    BaseState,
    CraneState,
    Heartbeat,
    Kind,
    RobotMode,
    encode_payload,
    pack_header,
)
from twin.emulator.commands import CommandDesk
from twin.emulator.faults import RobotFaults, garbage_frames
from twin.emulator.physics import EmulatedHall, Perturbation, RobotSample
from twin.emulator.timeline import (
    Channel,
    Incidents,
    apply_timed_faults,
    gripper_report,
    loose_item,
)

log = logging.getLogger(__name__)

BASE_RATE_HZ: Final = 100.0
HEARTBEAT_RATE_HZ: Final = 10.0
CRANE_RATE_HZ: Final = 20.0
POSITION_NOISE_RAD: Final = 0.0005
EFFORT_NOISE_NM: Final = 0.05
MAX_CLOCK_SKEW_NS: Final = 3_000_000
STATS_EVERY_S: Final = 1.0  # --stats is rewritten this often while running
COMMAND_POLL_STEPS: Final = 12  # physics steps between command-channel polls (20 Hz)


class EmulatorError(RuntimeError):
    """The emulator cannot start (said why, in one line)."""


class HallEmulator:
    """Run an :class:`EmulatedHall` in real time and publish it like the real hall would."""

    def __init__(
        self,
        scene: Scene,
        ingest: str,
        *,
        faults: dict[str, RobotFaults] | None = None,
        seed: int = 0,
        noise: bool = True,
        perturbation: Perturbation | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        incidents_every_s: float = 0.0,
        keys: Path | None = None,
        command: str = DEFAULT_COMMAND,
        t0_ns: int | None = None,
    ) -> None:
        """``keys``: a key directory; the gateways then connect to the twin's ``command``
        channel and execute dispatched plans. ``t0_ns``: the wall-clock instant (ns since the
        Unix epoch) that fault and incident times count from, e.g. the start of the twin's
        recording, so ``fall@8s`` falls 8 s into it; default: when :meth:`run` starts."""
        self.t0_ns = t0_ns
        self.scene = scene
        self.seed = seed
        self.noise = noise
        self._np_rng = np.random.default_rng(seed)
        self.hall = EmulatedHall(
            scene,
            seed=seed,
            perturbation=perturbation if perturbation is not None else Perturbation(),
        )
        self._owns_context = context is None
        self.context = context or zmq.Context()
        faults = faults or {}
        skew_rng = random.Random(seed)
        self.channels: dict[str, Channel] = {}
        gateways: list[Gateway] = []
        try:
            # with keys, telemetry is authenticated too: each gateway its own (or the shared) key
            server = server_public_key(keys) if keys is not None else b""

            def curve(source: str) -> tuple[KeyPair, bytes] | None:
                return (gateway_keys(keys, source), server) if keys is not None else None

            for robot in scene.robots:
                model = get_model(robot.model)
                codec = codec_for(model)
                gateway = Gateway(
                    self.context,
                    ingest,
                    clock_skew_ns=skew_rng.randint(-MAX_CLOCK_SKEW_NS, MAX_CLOCK_SKEW_NS),
                    curve=curve(robot.id),
                )
                gateways.append(gateway)
                self.channels[robot.id] = Channel(
                    robot_id=robot.id,
                    model=model,
                    task=robot.task,
                    codec=codec,
                    gateway=gateway,
                    faults=faults.get(robot.id, RobotFaults()),
                    rng=random.Random(f"{seed}:{robot.id}"),
                    item=loose_item(scene, robot.station),
                )
            self.crane_gateway = Gateway(
                self.context, ingest, curve=curve(scene.cranes[0].id if scene.cranes else "")
            )
            self.commands = (
                CommandDesk(
                    self.context,
                    command,
                    keys,
                    scene,
                    {robot_id: c.model for robot_id, c in self.channels.items()},
                )
                if keys is not None
                else None
            )
        except (ValueError, zmq.ZMQError, KeyDirError) as exc:
            for gateway in gateways:
                gateway.close()
            self.hall.close()
            if self._owns_context:
                self.context.destroy(linger=0)
            raise EmulatorError(f"cannot emulate {scene.name!r} into {ingest}: {exc}") from None
        self.incidents = Incidents(incidents_every_s, seed)
        self.steps = 0
        self.late_steps = 0
        self.skipped_steps = 0
        self.max_lag_s = 0.0
        self.elapsed_s = 0.0
        self._samples: dict[str, tuple[int, RobotSample]] = {}
        self._start_ns = time.monotonic_ns()
        self._t0_offset_s = 0.0  # the fault clock at _start_ns (see t0_ns)
        self.stats_path: Path | None = None  # rewritten every STATS_EVERY_S while running

    # -- publishing -------------------------------------------------------------

    def _sample(self, robot_id: str) -> RobotSample:
        cached = self._samples.get(robot_id)
        if cached is not None and cached[0] == self.steps:
            return cached[1]
        sample = self.hall.sample(robot_id)
        self._samples[robot_id] = (self.steps, sample)
        return sample

    def _emit(self, channel: Channel, kind: Kind, payload: bytes, now_ns: int) -> None:
        """Send one message through the channel's faults."""
        if channel.frozen or not channel.connected or now_ns < channel.silent_until_ns:
            return
        faults = channel.faults
        key, seq = channel.gateway.next_seq(kind, channel.robot_id)
        stamp = time.time_ns() + channel.gateway.clock_skew_ns
        frames = (key, pack_header(kind, seq, stamp, channel.gateway.epoch), payload)
        if faults.drop_p and channel.rng.random() < faults.drop_p:
            channel.counts["dropped"] += 1
        elif faults.delay_s:
            channel.delayed.append((now_ns + int(faults.delay_s * 1e9), frames))
        else:
            self._send(channel, frames)
        if faults.garbage_p and channel.rng.random() < faults.garbage_p:
            self._send_garbage(channel, kind, seq + 1)

    def _send(self, channel: Channel, frames: tuple[bytes, ...]) -> None:
        channel.gateway.socket.send_multipart(frames)
        channel.counts["sent"] += 1

    def _send_garbage(self, channel: Channel, kind: Kind, seq: int) -> None:
        """A malformed frame of a random kind; it never consumes a sequence number."""
        frames = garbage_frames(channel.rng, kind, channel.robot_id, seq, channel.gateway.epoch)
        channel.gateway.socket.send_multipart(frames)
        channel.counts["garbage"] += 1

    def _publish_joints(self, channel: Channel, now_ns: int) -> None:
        sample = self._sample(channel.robot_id)
        positions, efforts = sample.positions, sample.efforts
        lie = channel.faults.lie_rad(self.fault_time_s(now_ns))
        if lie:
            positions = positions + lie
        if self.noise:
            positions = positions + self._np_rng.normal(0.0, POSITION_NOISE_RAD, positions.shape)
            efforts = efforts + self._np_rng.normal(0.0, EFFORT_NOISE_NM, efforts.shape)
        payload = channel.codec.encode(positions, sample.velocities, efforts)
        self._emit(channel, Kind.JOINT_STATE, payload, now_ns)

    def _publish_base(self, channel: Channel, now_ns: int) -> None:
        sample = self._sample(channel.robot_id)
        payload = encode_payload(
            BaseState(
                position_m=sample.base_position_m,
                orientation_xyzw=sample.base_orientation_xyzw,
                linear_velocity_m_s=sample.base_linear_velocity_m_s,
                angular_velocity_rad_s=sample.base_angular_velocity_rad_s,
                linear_acceleration_m_s2=sample.base_linear_acceleration_m_s2,
            )
        )
        self._emit(channel, Kind.BASE, payload, now_ns)

    def _publish_heartbeat(self, channel: Channel, now_ns: int, *, goodbye: bool = False) -> None:
        """A heartbeat; ``goodbye``: mode 'shutdown' (the twin shows the robot GONE at once)."""
        fallen = self._sample(channel.robot_id).fallen
        grip_closed, holding = gripper_report(channel, self.hall, fallen)
        mode: RobotMode = (
            "shutdown" if goodbye else "fault" if fallen else "stopped" if channel.estopped
            else "running"
        )  # fmt: skip
        payload = encode_payload(
            Heartbeat(
                mode=mode,
                estop=channel.estopped,
                protective_stop=fallen,
                manufacturer=channel.model.manufacturer,
                model=channel.model.name,
                task=channel.task,
                grip_closed=grip_closed,
                holding=holding,
                cycle=self.hall.task_cycle(channel.robot_id),
                lessons=self.hall.lessons(channel.robot_id),
                step=self.hall.task_step(channel.robot_id),
            )
        )
        self._emit(channel, Kind.HEARTBEAT, payload, now_ns)

    def _publish_cranes(self) -> None:
        for crane in self.scene.cranes:
            state = self.hall.crane_sample(crane.id)
            payload = encode_payload(
                CraneState(
                    bridge_m=state.bridge_m,
                    trolley_m=state.trolley_m,
                    hoist_m=state.hoist_m,
                    moving=state.moving,
                )
            )
            self.crane_gateway.send(Kind.CRANE, crane.id, payload)

    # -- the loop ---------------------------------------------------------------

    def fault_time_s(self, now_mono_ns: int) -> float:
        """Seconds on the fault clock (from t0, or from the start of :meth:`run`)."""
        return self._t0_offset_s + (now_mono_ns - self._start_ns) / 1e9

    def run(self, *, duration_s: float | None = None, stop: threading.Event | None = None) -> None:
        """Run in real time until ``duration_s`` passes or ``stop`` is set."""
        dt_ns = int(self.hall.time_step_s * 1e9)
        start = self._start_ns = time.monotonic_ns()
        # fault and incident times count from t0 (a start already past shifts them earlier)
        t0_offset_s = 0.0 if self.t0_ns is None else (time.time_ns() - self.t0_ns) / 1e9
        self._t0_offset_s = t0_offset_s
        next_stats = start
        end = start + int(duration_s * 1e9) if duration_s is not None else None
        # (due time, order, what, robot id): a heap of the next thing to do per stream
        due: list[tuple[int, int, str, str]] = []
        order = 0
        periods: dict[tuple[str, str], int] = {}
        for robot_id, channel in self.channels.items():
            rate = channel.model.profile.rate_hz
            for what, hz in (
                ("js", channel.faults.js_rate_hz or rate),
                ("base", min(rate, BASE_RATE_HZ)),
                ("hb", HEARTBEAT_RATE_HZ),
            ):
                periods[(what, robot_id)] = int(1e9 / hz)
                heapq.heappush(due, (start, order, what, robot_id))
                order += 1
        crane_period = int(1e9 / CRANE_RATE_HZ)
        heapq.heappush(due, (start, order, "crane", ""))
        next_step = start
        while not (stop is not None and stop.is_set()):
            now = time.monotonic_ns()
            if end is not None and now >= end:
                break
            if now >= next_step:
                lag_s = (now - next_step) / 1e9  # how late this step starts
                self.max_lag_s = max(self.max_lag_s, lag_s)
                if lag_s > self.hall.time_step_s:  # more than a whole step behind
                    self.late_steps += 1
                self.hall.step()
                self.steps += 1
                next_step += dt_ns
                if lag_s > 0.25:  # hopelessly behind: drop the backlog, keep real time
                    self.skipped_steps += round(lag_s / self.hall.time_step_s)
                    next_step = now + dt_ns
                t_s = t0_offset_s + (now - start) / 1e9
                for channel in self.channels.values():
                    apply_timed_faults(channel, self.hall, t_s, now)
                self.incidents.step(t_s, self.hall, self.channels)
                if self.commands is not None and self.steps % COMMAND_POLL_STEPS == 0:
                    self.commands.poll(self.hall, self._stopped())
            if self.stats_path is not None and now >= next_stats:
                next_stats = now + int(STATS_EVERY_S * 1e9)
                self.elapsed_s = (now - start) / 1e9
                self.write_stats(self.stats_path)
            while due and due[0][0] <= now:
                when, tie, what, robot_id = heapq.heappop(due)
                if what == "crane":
                    self._publish_cranes()
                    heapq.heappush(due, (max(when + crane_period, now), tie, what, robot_id))
                    continue
                channel = self.channels[robot_id]
                if what == "js":
                    self._publish_joints(channel, now)
                elif what == "base":
                    self._publish_base(channel, now)
                else:
                    self._publish_heartbeat(channel, now)
                period = periods[(what, robot_id)]
                heapq.heappush(due, (max(when + period, now - period), tie, what, robot_id))
            for channel in self.channels.values():
                while channel.delayed and channel.delayed[0][0] <= now and channel.connected:
                    self._send(channel, channel.delayed.popleft()[1])
            wake = min(next_step, due[0][0] if due else next_step)
            sleep_s = (wake - time.monotonic_ns()) / 1e9
            if sleep_s > 0:
                time.sleep(sleep_s)
        self.elapsed_s = (time.monotonic_ns() - start) / 1e9
        self._say_goodbye()

    def _stopped(self) -> dict[str, str]:
        """Robots that cannot take commands now, and why."""
        out = {r: "emergency stop engaged" for r, c in self.channels.items() if c.estopped}
        for robot_id in self.channels:
            if robot_id not in out and self._sample(robot_id).fallen:
                out[robot_id] = "the robot has fallen"
        return out

    def wait_for_twin(self, timeout_s: float) -> bool:
        """Wait until the twin subscribed to every gateway (False on timeout)."""
        deadline = time.monotonic() + timeout_s
        gateways = [c.gateway for c in self.channels.values()] + [self.crane_gateway]
        return all(g.wait_for_subscriber(max(0.0, deadline - time.monotonic())) for g in gateways)

    def _say_goodbye(self) -> None:
        """On a clean stop: send what is delayed, then one last message on every stream.

        The last messages are never dropped, so the twin can count every earlier drop as a
        gap; the last heartbeat says ``shutdown`` (the twin shows the robot GONE at once).
        """
        now = time.monotonic_ns()
        for channel in self.channels.values():
            if channel.frozen or not channel.connected:
                continue
            while channel.delayed:
                self._send(channel, channel.delayed.popleft()[1])
            channel.faults = RobotFaults()
            channel.silent_until_ns = 0
            self._publish_joints(channel, now)
            self._publish_base(channel, now)
            self._publish_heartbeat(channel, now, goodbye=True)

    def stats(self) -> dict[str, Any]:
        """What was sent, dropped and garbled per robot, and how well real time was kept."""
        sim_s = self.steps * self.hall.time_step_s
        return {
            "elapsed_s": round(self.elapsed_s, 3),
            "simulated_s": round(sim_s, 3),
            "realtime_factor": round(sim_s / self.elapsed_s, 4) if self.elapsed_s else None,
            "steps": self.steps,
            "late_steps": self.late_steps,
            "incidents": [{"t_s": t, "robot": r} for t, r in self.incidents.log],
            "skipped_steps": self.skipped_steps,
            "max_lag_ms": round(self.max_lag_s * 1e3, 3),
            "robots": {
                robot_id: {**channel.counts, "epoch": channel.gateway.epoch}
                for robot_id, channel in self.channels.items()
            },
            # what reached each gateway on the command channel (None: no command channel)
            "commands": self.commands.stats() if self.commands is not None else None,
        }

    def write_stats(self, path: Path) -> None:
        """Write :meth:`stats` as JSON (atomically: a reader never sees half a file)."""
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(self.stats(), indent=2) + "\n", encoding="utf-8")
        partial.replace(path)

    def close(self) -> None:
        """Close gateways (linger 0) and the physics."""
        for channel in self.channels.values():
            channel.gateway.close()
        self.crane_gateway.close()
        if self.commands is not None:
            self.commands.close()
        self.hall.close()
        if self._owns_context:
            self.context.term()
