"""The hall as a PyBullet world: names, robots, crane limits, contact queries."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest

from robots import get_model
from robots.bullet import pb
from scenes import load_scene, parse_scene
from twin import CraneLimitError, UnknownNameError, World


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with World(load_scene()) as built:
        yield built


def lowest_z(world: World, body_name: str) -> float:
    body = world.resolve(body_name).body
    lows = [pb.getAABB(body, -1, physicsClientId=world.client)[0][2]]
    for link in range(pb.getNumJoints(body, physicsClientId=world.client)):
        lows.append(pb.getAABB(body, link, physicsClientId=world.client)[0][2])
    return float(min(lows))


def test_every_scene_entity_has_a_stable_readable_name(world: World) -> None:
    scene = world.scene
    names = set(world.body_names())
    expected = {"floor", f"hub:{scene.hub.id}"}
    expected |= {f"bench:{b.id}" for b in scene.benches}
    expected |= {f"item:{i.id}" for b in scene.benches for i in b.items}
    expected |= {f"crane:{c.id}" for c in scene.cranes}
    expected |= {f"robot:{r.id}" for r in scene.robots}
    expected |= {f"panel:{p.id}" for p in scene.panels}
    assert names == expected
    assert (
        world.resolve("robot:K1-03/left_knee").link
        == world.resolve(f"robot:K1-03/{get_model('kestrel_k1').child_link_of('left_knee')}").link
    )
    assert world.resolve("crane:C1/trolley").link is not None


def test_unknown_names_are_refused_with_what_exists(world: World) -> None:
    with pytest.raises(UnknownNameError, match="no body 'bench:B99'"):
        world.resolve("bench:B99")
    with pytest.raises(UnknownNameError, match=r"robot:K1-03 has no link 'left_tail'.*links:"):
        world.resolve("robot:K1-03/left_tail")


def test_robots_stand_at_their_stations_with_feet_on_the_floor(world: World) -> None:
    for robot in world.scene.robots:
        station = world.scene.station(robot.station)
        (x, y, _), orientation = world.base_pose(robot.id)
        assert (x, y) == pytest.approx(station.pose.xyz[:2], abs=1e-6)
        yaw = pb.getEulerFromQuaternion(orientation)[2]
        assert math.remainder(yaw - station.pose.yaw_rad, 2 * math.pi) == pytest.approx(
            0.0, abs=1e-6
        )
        assert lowest_z(world, f"robot:{robot.id}") == pytest.approx(0.0, abs=0.01)


def test_joints_by_canonical_or_vendor_name(world: World) -> None:
    world.set_joint_positions("K1-03", {"left_knee": 0.8, "r_knee_joint": 0.4})
    canonical = world.joint_positions("K1-03")
    vendor = world.joint_positions("K1-03", canonical=False)
    assert canonical["left_knee"] == pytest.approx(0.8)
    assert vendor["l_knee_joint"] == pytest.approx(0.8)
    assert canonical["right_knee"] == pytest.approx(0.4)
    # a bent knee moves the foot: forward kinematics reads the new state
    before = world.link_pose("robot:K1-03/left_ankle_roll")[0]
    world.set_joint_positions("K1-03", {"left_knee": 0.0})
    after = world.link_pose("robot:K1-03/left_ankle_roll")[0]
    assert after[2] < before[2] - 0.05
    # Orca's grippers have no canonical joint: kept under the vendor name
    assert "L_GRIP" in world.joint_positions("H2-01")


def test_bad_joint_updates_apply_nothing(world: World) -> None:
    world.set_joint_positions("T3-01", {"left_knee": 0.3})
    with pytest.raises(UnknownNameError, match="no joint 'left_tail'"):
        world.set_joint_positions("T3-01", {"left_knee": 1.0, "left_tail": 0.1})
    with pytest.raises(ValueError, match="non-finite"):
        world.set_joint_positions("T3-01", {"left_knee": 1.0, "right_knee": math.nan})
    assert world.joint_positions("T3-01")["left_knee"] == pytest.approx(0.3)


def test_crane_positions_move_its_links_and_limits_are_refused(world: World) -> None:
    world.set_crane("C1", bridge_m=10.0, trolley_m=6.0, hoist_m=3.0)
    assert world.crane_positions("C1") == pytest.approx(
        {"bridge": 10.0, "trolley": 6.0, "hoist": 3.0}
    )
    trolley = world.link_pose("crane:C1/trolley")[0]
    hook = world.link_pose("crane:C1/hook")[0]
    assert trolley[:2] == pytest.approx((10.0, 6.0))
    assert hook == pytest.approx((10.0, 6.0, 3.0))
    with pytest.raises(
        CraneLimitError, match=r"crane:C1/bridge: 39\.5 m is outside travel 2\.\.38 m"
    ):
        world.set_crane("C1", trolley_m=8.0, bridge_m=39.5)
    assert world.crane_positions("C1")["trolley"] == pytest.approx(6.0)  # nothing moved
    with pytest.raises(CraneLimitError, match="hoist"):
        world.set_crane("C1", hoist_m=7.5)


def test_crane_physics_stops_at_the_travel_limit() -> None:
    scene = load_scene()
    with World(scene) as world:
        crane = scene.cranes[0]
        world.set_crane("C1", bridge_m=crane.bridge.travel[1] - 0.5)
        world.drive_crane("C1", "bridge", crane.bridge.speed)
        world.step(round(3.0 / world.time_step_s))  # 1.8 m of travel asked for, 0.5 m left
        assert world.crane_positions("C1")["bridge"] == pytest.approx(
            crane.bridge.travel[1], abs=0.02
        )
        world.set_crane("C1", hoist_m=crane.hoist.travel[1] - 0.3)
        world.drive_crane("C1", "hoist", crane.hoist.speed)  # raise the hook and its load
        world.step(round(3.0 / world.time_step_s))
        assert world.crane_positions("C1")["hoist"] == pytest.approx(
            crane.hoist.travel[1], abs=0.02
        )
        # lowered, the load lands on the floor before the hook reaches its lowest travel
        world.drive_crane("C1", "hoist", -crane.hoist.speed)
        world.step(round(40.0 / world.time_step_s))
        load = world.link_pose("crane:C1/load")[0]
        assert crane.load is not None
        assert load[2] == pytest.approx(crane.load.size[2] / 2, abs=0.02)


def test_robot_inside_a_bench_is_reported_by_the_contact_query() -> None:
    scene = load_scene()
    with World(scene) as world:
        assert world.contacts("robot:K1-01", "bench:B1") == []
        clearance = world.min_distance("robot:K1-01", "bench:B1")
        assert clearance is not None and 0.0 < clearance < 0.6
        bench = scene.bench("B1")
        _, orientation = world.base_pose("K1-01")
        base_z = get_model("kestrel_k1").base_height_m
        world.set_base_pose("K1-01", (bench.pose.xyz[0], bench.pose.xyz[1], base_z), orientation)
        found = world.contacts("robot:K1-01", "bench:B1")
        assert found, "a robot standing inside a bench must be in contact with it"
        assert min(c.distance_m for c in found) < 0.0
        assert all(c.a.startswith("robot:K1-01") and c.b == "bench:B1" for c in found)
        # link-level query: the pelvis is inside the bench block (bench top 0.9 m)
        assert world.contacts("robot:K1-01/left_knee", "bench:B1")


def test_crane_load_lowered_onto_a_robot_touches_it() -> None:
    scene = load_scene()
    with World(scene) as world:
        station = scene.station(scene.robot("K1-03").station)
        world.set_crane(
            "C1", bridge_m=station.pose.xyz[0], trolley_m=station.pose.xyz[1], hoist_m=6.0
        )
        assert world.contacts("crane:C1/load", "robot:K1-03") == []
        world.set_crane("C1", hoist_m=2.5)
        hits = world.contacts("crane:C1", "robot:K1-03")
        assert hits and hits[0].a == "crane:C1/load"


def test_items_rest_on_benches_under_gravity() -> None:
    with World(load_scene()) as world:
        start = {
            name: world.link_pose(name)[0]
            for name in world.body_names()
            if name.startswith("item:")
        }
        world.step(240)
        for name, position in start.items():
            assert world.link_pose(name)[0] == pytest.approx(position, abs=0.01), name


def test_an_external_urdf_stands_in_a_world_through_the_same_loader() -> None:
    text = """\
name: external
floor: {size: [6, 6]}
hub: {id: HUB, pose: {xyz: [5, 5, 0]}, size: [0.5, 0.5, 1]}
stations: [{id: S1, pose: {xyz: [3, 3, 0], yaw: 30 deg}}]
robots: [{id: EXT-1, model: pybullet_humanoid, station: S1, task: idle}]
"""
    with World(parse_scene(text)) as world:
        assert lowest_z(world, "robot:EXT-1") == pytest.approx(0.0, abs=0.02)
        world.set_joint_positions("EXT-1", {"right_knee": -0.5})
        assert world.joint_positions("EXT-1")["right_knee"] == pytest.approx(-0.5)
