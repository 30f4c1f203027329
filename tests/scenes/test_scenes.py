"""Scene files: the default hall loads; each kind of bad file gets its exact message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from scenes import DEFAULT_SCENE, SceneError, load_scene, parse_scene

# A small valid hall; line numbers below refer to this text.
MINIMAL = textwrap.dedent(
    """\
    name: Test hall
    floor:
      size: [20, 10]
      ceiling: 8
    hub:
      id: HUB
      pose: {xyz: [10, 5, 0]}
      size: [1, 1, 2]
    benches:
      - id: B1
        pose: {xyz: [4, 2, 0]}
        size: [2.0, 0.9]
        height: 0.9
        items:
          - {id: wrench-1, kind: torque_wrench, offset: [0, 0], size: [0.4, 0.06, 0.04], mass: 1.2}
      - id: B2
        pose: {xyz: [8, 2, 0], yaw: 90 deg}
        size: [2.0, 0.9]
        height: 90 cm
    cranes:
      - id: C1
        rail_y: [1, 9]
        rail_height: 6
        bridge: {travel: [1, 19], speed: 0.5 m/s}
        trolley: {travel: [1.5, 8.5], speed: 0.4}
        hoist: {travel: [1, 5], speed: 0.2}
        home: {bridge: 10, trolley: 5, hoist: 4}
    stations:
      - {id: S1, pose: {xyz: [4, 3, 0], yaw: -90 deg}, bench: B1}
      - {id: S2, pose: {xyz: [14, 6, 0]}}
    robots:
      - {id: K1-01, model: kestrel_k1, manufacturer: Kestrel Robotics, station: S1,
         task: torque_wrench}
      - {id: T3-01, model: tessel_t3, station: S2, task: walking}
    panels:
      - {id: P1, pose: {xyz: [10, 9.9, 3], yaw: -90 deg}, size: [3, 1]}
    sensors:
      - {id: L1, kind: lidar, pose: {xyz: [10, 4, 2]}, range: 20 m}
    """
)


def problems(text: str) -> list[str]:
    with pytest.raises(SceneError) as caught:
        parse_scene(text, "hall.yaml")
    return [str(p) for p in caught.value.problems]


def test_minimal_scene_is_valid_and_si_inside() -> None:
    scene = parse_scene(MINIMAL, "hall.yaml")
    b2 = scene.bench("B2")
    assert b2.height == pytest.approx(0.9)
    assert b2.pose.yaw_rad == pytest.approx(1.5707963, rel=1e-6)
    assert scene.station("S1").pose.yaw_rad == pytest.approx(-1.5707963, rel=1e-6)
    assert scene.cranes[0].bridge.speed == pytest.approx(0.5)


def test_default_hall_is_a_real_training_hall() -> None:
    scene = load_scene()
    assert DEFAULT_SCENE.name == "training_hall.yaml"
    from robots import get_model

    makers = {get_model(r.model).manufacturer for r in scene.robots}
    assert len(scene.robots) >= 6
    assert len(makers) >= 3
    assert len([b for b in scene.benches if b.items]) >= 4
    kinds = {i.kind for b in scene.benches for i in b.items}
    assert {"torque_wrench", "sensor_array", "precision_component", "fixture"} <= kinds
    assert len(scene.cranes) >= 1
    assert len(scene.panels) >= 2
    assert {s.kind for s in scene.sensors} == {"camera", "lidar"}
    assert {"torque_wrench", "sensor_calibration", "walking", "squats"} <= {
        r.task for r in scene.robots
    }


def test_typo_key_names_file_line_path_and_suggestion() -> None:
    text = MINIMAL.replace(
        "    size: [2.0, 0.9]\n    height: 0.9\n", "    sise: [2.0, 0.9]\n    height: 0.9\n"
    )
    assert problems(text) == [
        "hall.yaml:10: benches[0]: missing required key 'size'",
        "hall.yaml:12: benches[0].sise: unknown key 'sise' (did you mean 'size'?)",
    ]


def test_unknown_top_level_key_lists_allowed_when_nothing_is_close() -> None:
    found = problems(MINIMAL + "forklifts: []\n")
    assert len(found) == 1
    assert found[0].startswith(
        "hall.yaml:39: forklifts: unknown key 'forklifts' (allowed: name, floor, hub"
    )


def test_wrong_type() -> None:
    text = MINIMAL.replace("height: 90 cm", "height: tall")
    assert problems(text) == [
        "hall.yaml:19: benches[1].height: expected a length like 1.5 or '1.5 m', got 'tall'"
    ]


def test_wrong_unit() -> None:
    text = MINIMAL.replace("height: 90 cm", "height: 90 deg")
    assert problems(text) == [
        "hall.yaml:19: benches[1].height: wrong unit 'deg' (a unit of angle); "
        "a length takes m, cm, mm"
    ]


def test_negative_size() -> None:
    text = MINIMAL.replace("size: [1, 1, 2]", "size: [1, -1, 2]")
    assert problems(text) == ["hall.yaml:8: hub.size[1]: must be positive, got -1"]


def test_overlapping_benches() -> None:
    text = MINIMAL.replace(
        "pose: {xyz: [8, 2, 0], yaw: 90 deg}", "pose: {xyz: [4.9, 2.2, 0], yaw: 90 deg}"
    )
    assert problems(text) == ["hall.yaml:17: benches[1].pose: bench 'B2' overlaps bench 'B1'"]


def test_rotated_benches_that_only_look_close_do_not_overlap() -> None:
    # B2 turned 90 deg: its footprint is 0.9 (x) by 2.0 (y); 0.5 + 0.45 < 1.0 apart in x
    text = MINIMAL.replace(
        "pose: {xyz: [8, 2, 0], yaw: 90 deg}", "pose: {xyz: [6.0, 2.0, 0], yaw: 90 deg}"
    )
    assert parse_scene(text, "hall.yaml").bench("B2").pose.xyz[0] == 6.0


def test_two_robots_on_one_station() -> None:
    text = MINIMAL.replace("station: S2", "station: S1")
    assert problems(text) == [
        "hall.yaml:34: robots[1].station: station 'S1' already holds robot 'K1-01'; "
        "one robot per station"
    ]


def test_unknown_model() -> None:
    text = MINIMAL.replace("model: tessel_t3", "model: tessel_t9")
    found = problems(text)
    assert len(found) == 1
    assert found[0].startswith(
        "hall.yaml:34: robots[1].model: unknown model 'tessel_t9' (known: kestrel_k1,"
    )


def test_manufacturer_must_match_model() -> None:
    text = MINIMAL.replace("manufacturer: Kestrel Robotics", "manufacturer: Orca Mechatronics")
    assert problems(text) == [
        "hall.yaml:32: robots[0].manufacturer: 'Orca Mechatronics' does not make 'kestrel_k1' "
        "(its manufacturer is 'Kestrel Robotics')"
    ]


def test_pose_outside_the_floor() -> None:
    text = MINIMAL.replace("{xyz: [14, 6, 0]}", "{xyz: [24, 6, 0]}")
    assert problems(text) == [
        "hall.yaml:30: stations[1].pose: position outside the floor at (24, 6); "
        "the floor spans x 0..20 m, y 0..10 m"
    ]


def test_bench_footprint_reaching_past_the_wall() -> None:
    text = MINIMAL.replace("pose: {xyz: [4, 2, 0]}", "pose: {xyz: [0.5, 2, 0]}")
    found = problems(text)
    assert (
        "hall.yaml:11: benches[0].pose: footprint reaches outside the floor at (0.5, 2); "
        in found[0]
    )


def test_crane_home_outside_travel_and_hoist_above_rails() -> None:
    text = MINIMAL.replace("home: {bridge: 10,", "home: {bridge: 25,").replace(
        "hoist: {travel: [1, 5]", "hoist: {travel: [1, 7]"
    )
    assert problems(text) == [
        "hall.yaml:26: cranes[0].hoist.travel: hook height 1..7 m must lie between the floor and "
        "the rails (6 m)",
        "hall.yaml:27: cranes[0].home.bridge: 25 m is outside bridge travel 1..19 m",
    ]


def test_duplicate_ids_and_unknown_task_are_all_reported_in_file_order() -> None:
    text = MINIMAL.replace("id: B2", "id: B1").replace("task: walking", "task: dancing")
    found = problems(text)
    assert found == [
        "hall.yaml:34: robots[1].task: 'dancing' is not one of 'walking', 'squats', "
        "'pick_and_place', 'torque_wrench', 'sensor_calibration', 'precision_assembly' or 'idle'",
    ]
    # schema errors come first; once the schema passes, whole-scene rules run
    text = MINIMAL.replace("id: B2", "id: B1")
    assert problems(text) == [
        "hall.yaml:16: benches[1].id: duplicate id 'B1' (already used by benches[0])"
    ]


def test_yaml_syntax_error_is_one_line_with_its_line_number() -> None:
    text = MINIMAL.replace("size: [20, 10]", "size: [20, 10")
    found = problems(text)
    assert len(found) == 1
    assert found[0].startswith("hall.yaml:4: YAML syntax error:")


def test_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    assert problems("- just\n- a list\n") == [
        "hall.yaml:1: a scene is a mapping of keys, got a list"
    ]
    assert problems("") == ["hall.yaml:1: a scene is a mapping of keys, got an empty file"]
    with pytest.raises(SceneError) as caught:
        load_scene(tmp_path / "nope.yaml")
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: no such file"


def test_hostile_nesting_is_one_problem_not_a_crash() -> None:
    with pytest.raises(SceneError) as caught:
        parse_scene("a: " + "[" * 5000 + "]" * 5000, "deep.yaml")
    assert [str(p) for p in caught.value.problems] == ["deep.yaml: YAML nested too deeply"]
