"""The viewer, rendered off screen: the tests look at the pixels it produced."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import numpy as np
import pytest
import pyvista as pv

from scenes import load_scene
from viz.screen import world_to_pixel
from viz.sources import StaticSource
from viz.viewer import HallViewer

pv.OFF_SCREEN = True
SIZE = (960, 540)


@pytest.fixture
def viewer() -> Iterator[HallViewer]:
    scene = load_scene()
    hall = HallViewer(scene, StaticSource(scene), off_screen=True, window_size=SIZE)
    yield hall
    hall.close()


def frame(viewer: HallViewer) -> np.ndarray:
    viewer.update(now_s=1.0)
    viewer.plotter.render()
    image = viewer.plotter.screenshot(return_img=True)
    assert image is not None
    return np.asarray(image)


def look_at_robot(viewer: HallViewer, robot_id: str, distance_m: float = 4.0) -> None:
    x, y, z = viewer.robots.head_position(robot_id)
    viewer.plotter.camera_position = [
        (x - distance_m, y - distance_m, z + 1.0),
        (x, y, z - 0.6),
        (0.0, 0.0, 1.0),
    ]


def chest_patch(viewer: HallViewer, image: np.ndarray, robot_id: str) -> np.ndarray:
    x, y, z = viewer.robots.head_position(robot_id)
    col, row = world_to_pixel(viewer, (x, y, z - 0.45))
    return image[row - 2 : row + 3, col - 2 : col + 3].reshape(-1, 3).astype(int)


def test_the_hall_is_drawn(viewer: HallViewer) -> None:
    image = frame(viewer)
    assert image.shape == (SIZE[1], SIZE[0], 3)
    colours = {tuple(c) for c in image[::8, ::8].reshape(-1, 3) // 16}
    assert len(colours) > 40, "a blank or flat picture"
    # the floor fills the middle of the default view: light grey, not the sky gradient
    centre = image[SIZE[1] // 2 - 20 : SIZE[1] // 2 + 20, SIZE[0] // 2 - 20 : SIZE[0] // 2 + 20]
    assert centre.mean() > 120


@pytest.mark.parametrize("robot_id", ["K1-01", "H2-01", "T3-02"])
def test_each_robot_is_drawn_where_its_pose_says(viewer: HallViewer, robot_id: str) -> None:
    look_at_robot(viewer, robot_id)
    image = frame(viewer)
    hx, hy, hz = viewer.robots.head_position(robot_id)
    col, row = world_to_pixel(viewer, (hx, hy, hz - 0.45))  # the chest, from the pose
    with_robot = image[row - 2 : row + 3, col - 2 : col + 3].reshape(-1, 3).astype(int)
    # move the robot away (same camera): those pixels now show what was behind it
    view = viewer.source.robots[robot_id]
    x, y, z = view.base_position_m
    view.base_position_m = (x + 30.0 if x < 20 else x - 30.0, y, z)
    image = frame(viewer)
    behind = image[row - 2 : row + 3, col - 2 : col + 3].reshape(-1, 3).astype(int)
    assert viewer.robots.head_position(robot_id)[0] != pytest.approx(hx, abs=1.0)
    assert np.abs(with_robot - behind).max() > 40, "no robot where its pose says it stands"


def test_a_stale_robot_is_grey_and_a_live_one_keeps_its_colours(viewer: HallViewer) -> None:
    look_at_robot(viewer, "K1-01")
    live = chest_patch(viewer, frame(viewer), "K1-01").mean(axis=0)
    assert live.max() - live.min() > 40, f"K1-01 should be coloured, got {live}"
    viewer.source.robots["K1-01"].liveness = "STALE"
    look_at_robot(viewer, "K1-01")
    stale = chest_patch(viewer, frame(viewer), "K1-01").mean(axis=0)
    assert stale.max() - stale.min() < 12, f"a STALE robot must render grey, got {stale}"


def test_flows_are_drawn_from_robots_to_the_hub(viewer: HallViewer) -> None:
    for view in viewer.source.robots.values():
        view.in_bytes_per_s = 200_000.0
    image = frame(viewer)
    arc = viewer.flows.arcs["K1-03"]
    midpoints = [world_to_pixel(viewer, arc[i]) for i in (8, 12, 16)]
    lit = [image[r, c].astype(int) for c, r in midpoints]
    viewer.flows.set_visible(False)
    image_without = frame(viewer)
    unlit = [image_without[r, c].astype(int) for c, r in midpoints]
    changed = [int(np.abs(a - b).max()) for a, b in zip(lit, unlit, strict=True)]
    assert max(changed) > 40, "no flow drawn along the arc"
    # the arc runs from the robot's chest to the top of the hub
    hub = viewer.scene.hub
    assert arc[-1] == pytest.approx([hub.pose.xyz[0], hub.pose.xyz[1], hub.size[2]])
    assert np.linalg.norm(arc[0][:2] - np.array(viewer.robots.head_position("K1-03")[:2])) < 0.01


def test_kiosk_tour_moves_the_camera_and_stays_in_the_hall() -> None:
    scene = load_scene()
    hall = HallViewer(scene, StaticSource(scene), off_screen=True, window_size=SIZE, kiosk=True)
    try:
        positions = []
        for t_s in (0.0, 3.0, 7.5, 20.0):
            hall.update(now_s=t_s)
            positions.append(np.array(hall.plotter.camera_position[0]))
        moves = [np.linalg.norm(b - a) for a, b in itertools.pairwise(positions)]
        assert min(moves) > 0.1
        sx, sy = scene.floor.size
        for t_s in np.linspace(0.0, hall.tour.period_s, 50):
            position, focal = hall.tour.camera_at(float(t_s))
            assert (
                -5 < position[0] < sx + 5 and -5 < position[1] < sy + 5 and 1.0 < position[2] < 6.0
            )
            assert 0 <= focal[0] <= sx and 0 <= focal[1] <= sy
    finally:
        hall.close()


def test_selecting_a_robot_shows_its_joint_panel(viewer: HallViewer) -> None:
    for t_s in np.linspace(0.0, 1.0, 12):
        viewer.update(now_s=float(t_s))
    robot_id = viewer.robots.robot_ids[2]
    cells = viewer.robots.mesh.n_cells
    cell = next(c for c in range(0, cells, 7) if viewer.robots.robot_of_cell(c) == robot_id)
    viewer.pick_cell(cell)  # what a click on the robot's mesh does
    assert viewer.selected == robot_id
    image_with = frame(viewer)
    viewer.select(None)
    image_without = frame(viewer)
    panel = (slice(int(SIZE[1] * 0.55), SIZE[1] - 30), slice(int(SIZE[0] * 0.66), SIZE[0] - 30))
    assert np.abs(image_with[panel].astype(int) - image_without[panel].astype(int)).max() > 60


def test_colour_by_effort_changes_the_robot_colours(viewer: HallViewer) -> None:
    look_at_robot(viewer, "K1-01")
    before = chest_patch(viewer, frame(viewer), "K1-01").mean(axis=0)
    view = viewer.source.robots["K1-01"]
    view.efforts = [1e6] * len(view.efforts)  # every joint beyond its rating
    viewer.set_colour_by("effort")
    look_at_robot(viewer, "K1-01")
    after = chest_patch(viewer, frame(viewer), "K1-01").mean(axis=0)
    assert after[0] > 100 and after[0] > after[2] + 40, (
        f"saturated effort should be red, got {after}"
    )
    assert np.abs(after - before).max() > 30


def test_lidar_layer_toggles_a_real_scan(viewer: HallViewer) -> None:
    viewer.show_lidar(True)
    assert viewer.lidar_actor is not None
    cloud = viewer.lidar_actor.mapper.dataset
    assert cloud.n_points > 1000
    lidar = next(s for s in viewer.scene.sensors if s.kind == "lidar")
    distances = np.linalg.norm(cloud.points - np.array(lidar.pose.xyz), axis=1)
    assert distances.max() <= lidar.range + 1e-3
    viewer.show_lidar(False)
    assert viewer.lidar_actor is None and "lidar" not in viewer.plotter.actors


def test_a_shared_lesson_sends_pulses_from_the_hub_to_robots_on_that_task(
    viewer: HallViewer,
) -> None:
    viewer.update(now_s=0.0)
    squatters = tuple(r.id for r in viewer.scene.robots if r.task == "walking")
    viewer.flows.share_lesson(0.0, squatters)
    hub_top = np.array(viewer.flows.hub_top_m)
    viewer.update(now_s=0.2)
    early = np.asarray(viewer.flows.lesson_mesh.points[: len(squatters)])
    viewer.update(now_s=1.8)
    late = np.asarray(viewer.flows.lesson_mesh.points[: len(squatters)])
    for i, robot_id in enumerate(squatters):
        chest = viewer.flows.arcs[robot_id][0]
        # pulses leave the hub and travel towards each robot on that task
        assert np.linalg.norm(early[i] - hub_top) < np.linalg.norm(late[i] - hub_top)
        assert np.linalg.norm(late[i] - chest) < np.linalg.norm(early[i] - chest)
    viewer.update(now_s=5.0)  # the burst is over: pulses wait, hidden, inside the hub
    assert (viewer.flows.lesson_mesh.points[:, 2] < hub_top[2]).all()


def test_a_fallen_robot_is_marked(viewer: HallViewer) -> None:
    viewer.update(now_s=0.0)
    assert viewer.fallen == set()
    view = viewer.source.robots["T3-04"]
    x, y, _ = view.base_position_m
    view.base_position_m = (x, y, 0.2)  # pelvis on the floor
    viewer.update(now_s=0.1)
    assert viewer.fallen == {"T3-04"}
    index = viewer.robots.robot_ids.index("T3-04")
    marker = np.asarray(viewer._markers.points[index])
    assert np.linalg.norm(marker[:2] - np.array([x, y])) < 1.0 and marker[2] > 0.0
    others = np.delete(np.asarray(viewer._markers.points), index, axis=0)
    assert (others[:, 2] < 0).all(), "only the fallen robot carries a marker"
    assert "FALLEN" in viewer._label_text[index]


def test_failures_and_lessons_count_on_the_led_panels(viewer: HallViewer) -> None:
    from sync.fanout import Event

    lesson = {"lesson": "L0001", "task": "pick_and_place", "concerns": ["T3-01", "K1-02"]}
    again = {**lesson, "new": False}  # a second robot's sighting strengthens the same lesson
    events = [Event(1, i, 0, "failure", "T3-04", "{}") for i in range(3)] + [
        Event(1, 3, 0, "lesson", "T3-01", json.dumps(lesson)),
        Event(1, 4, 0, "lesson", "K1-02", json.dumps(again)),
        Event(1, 5, 0, "lesson", "T3-04", json.dumps({**lesson, "lesson": "L0002"})),
    ]
    viewer.source.new_events = lambda: iter(events)  # type: ignore[method-assign]
    viewer.update(now_s=0.0)
    assert (viewer.tally.failures_seen, viewer.tally.lessons_seen) == (3, 2)
    shows = {p.id: p.shows for p in viewer.scene.panels}
    failures = next(pid for pid, what in shows.items() if "failures_today" in what)
    assert "FAILURES 3" in viewer.hall.panel_text[failures]
    lessons = next(pid for pid, what in shows.items() if "lessons" in what)
    assert "LESSONS 2" in viewer.hall.panel_text[lessons]


def test_a_lesson_burst_goes_to_the_robots_it_concerns_across_tasks(viewer: HallViewer) -> None:
    from sync.fanout import Event

    views = viewer.source.robots.values()
    by_task = {v.task: v.robot_id for v in views}
    walker, squatter = by_task["walking"], by_task["squats"]
    detail = {"lesson": "L0003", "task": "walking", "concerns": [walker, squatter, "NOT-HERE"]}
    burst = viewer.tally.take(Event(1, 0, 0, "lesson", walker, json.dumps(detail)), views)
    assert burst == (walker, squatter)  # a fall concerns the squats too; unknown ids dropped
    # an older detail without the list: every robot on the lesson's task
    plain = viewer.tally.take(
        Event(1, 1, 0, "lesson", walker, json.dumps({"task": "squats"})), views
    )
    assert burst is not None and plain == tuple(v.robot_id for v in views if v.task == "squats")
    failure = Event(1, 2, 0, "failure", walker, "{}")
    assert viewer.tally.take(failure, views) is None


def test_a_lesson_burst_rises_from_the_robot_that_failed_before_it_spreads() -> None:
    from viz.flows import LESSON_S, LESSON_UP_SHARE, Lesson, arc_points, lesson_points

    hub = np.array([0.0, 0.0, 3.0])
    arcs = {r: arc_points(np.array([x, 5.0, 1.0]), hub) for r, x in (("A", -4.0), ("B", 4.0))}
    lesson = [Lesson(0.0, ("A", "B"), source_id="A")]
    rising = lesson_points(lesson, arcs, 0.5 * LESSON_UP_SHARE * LESSON_S)
    assert len(rising) == 2 and all(p[0] < -0.5 for p in rising)  # both on A's side, going up
    spreading = lesson_points(
        lesson, arcs, (LESSON_UP_SHARE + 0.6 * (1 - LESSON_UP_SHARE)) * LESSON_S
    )
    assert spreading[0][0] < -0.5 < 0.5 < spreading[1][0]  # one towards A, one towards B
