"""End to end in one process: the emulator's true physics state arrives in the twin's world.

Every manufacturer's own format (float32 radians, float64 degrees, name/value map) and
order must come out as the same canonical joint values the emulator's physics had.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import zmq

from robots import get_model
from scenes import load_scene
from tests.helpers import ThreadedMirror, robot_row, status_of, wait_for
from twin.emulator.emulate import HallEmulator
from twin.emulator.physics import Perturbation


def test_twin_world_matches_emulator_physics_for_every_manufacturer(
    context: zmq.Context[zmq.Socket[bytes]], mirror: ThreadedMirror
) -> None:
    scene = load_scene()
    emulator = HallEmulator(
        scene,
        mirror.endpoints.ingest,
        noise=False,
        perturbation=Perturbation.none(),
        context=context,
    )
    try:
        assert emulator.wait_for_twin(5.0)
        stop = threading.Event()
        runner = threading.Thread(target=emulator.run, kwargs={"stop": stop}, daemon=True)
        runner.start()
        wait_for(lambda: emulator.hall.sim_time_s > 1.5, timeout_s=30.0, what="1.5 s of emulation")
        stop.set()  # on a clean stop every gateway sends its final state, then 'shutdown'
        runner.join(timeout=10.0)
        assert not runner.is_alive()
        wait_for(
            lambda: all(r["liveness"] == "GONE" for r in status_of(context, mirror)["robots"]),
            timeout_s=5.0,
            what="every gateway's goodbye",
        )
        status = status_of(context, mirror)
        ticks = status["ticks"]
        wait_for(lambda: status_of(context, mirror)["ticks"] > ticks + 2, timeout_s=2.0)
        mirror.stop_thread()
        makers = set()
        for robot in scene.robots:
            truth = emulator.hall.sample(robot.id)
            model = get_model(robot.model)
            profile = model.profile
            makers.add(profile.encoding)
            in_world = mirror.world.joint_positions(robot.id)
            tolerance = 1e-6 if profile.encoding == "packed_f32" else 1e-9
            for vendor, value in zip(profile.joint_names, truth.positions, strict=True):
                assert in_world[profile.canonical_name(vendor)] == pytest.approx(
                    value, abs=tolerance
                ), (robot.id, vendor)
            position, _ = mirror.world.base_pose(robot.id)
            np.testing.assert_allclose(position, truth.base_position_m, atol=1e-9)
            assert robot_row(status, robot.id)["gaps"] == 0
        assert makers == {"packed_f32", "packed_deg_f64", "map"}
    finally:
        emulator.close()
