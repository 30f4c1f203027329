"""The divergence ghost in replay: the twin's prediction drawn where a robot's report jumped.

The recording is real: K1-01 reports its arms at rest, then at JUMP_S reports them flung
up sideways (a jump no motor makes in 10 ms); the offline detectors find the divergence
in that recording, and a second recording holds the same messages plus that failure
event, as ``twin live --record`` would have written it. The tests look at the pixels.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
import pyvista as pv

from robots import get_model
from scenes import DEFAULT_SCENE, load_scene
from scenes.model import Scene
from sync.codecs import codec_for
from sync.protocol import Kind, Received
from tests.helpers import run_replay
from tests.recordings import T0_NS, received
from twin.failures.divergence import predict_envelope
from twin.failures.events import FailureEvent
from twin.failures.monitors import DIVERGENCE_SPEED_FACTOR
from twin.failures.offline import detect_offline
from twin.record.recorder import Recorder
from twin.record.recording import open_recording
from twin.record.replay_source import ReplaySource
from viz.ghost import CHECK_S, DivergenceGhost
from viz.screen import world_to_pixel
from viz.viewer import HallViewer

pv.OFF_SCREEN = True
ROBOT = "K1-01"
PERIOD_NS = 10_000_000  # joint states at 100 Hz
SECONDS = 4.0
JUMP_S = 1.5
ARMS = {"l_shoulder_roll_joint": 2.5, "r_shoulder_roll_joint": -2.5}  # flung up sideways
SIZE = (640, 400)


def _messages(scene: Scene) -> list[Received]:
    model = get_model(next(r.model for r in scene.robots if r.id == ROBOT))
    codec = codec_for(model)
    zeros = np.zeros(len(codec.names))
    out = []
    for seq in range(int(SECONDS * 1e9 / PERIOD_NS)):
        stamp = T0_NS + seq * PERIOD_NS
        positions = zeros.copy()
        if seq * PERIOD_NS >= JUMP_S * 1e9:
            for name, value in ARMS.items():
                positions[codec.names.index(name)] = value
        payload = codec.encode(positions, zeros, zeros)
        out.append(received(Kind.JOINT_STATE, ROBOT, seq, stamp, payload))
    return out


def _record(
    path: Path, scene: Scene, messages: list[Received], failures: list[FailureEvent]
) -> None:
    text = DEFAULT_SCENE.read_text(encoding="utf-8")
    with Recorder(path, scene, text, twin_version="test", start_ns=T0_NS) as recorder:
        for message in messages:
            recorder.sink(message)
        for failure in failures:
            detail = msgspec.json.encode(failure).decode()
            recorder.event("failure", failure.robot_id, detail, failure.stamp_ns)


@pytest.fixture(scope="module")
def rec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scene = load_scene()
    folder = tmp_path_factory.mktemp("ghost")
    messages = _messages(scene)
    _record(folder / "plain.mcap", scene, messages, [])
    found = detect_offline(open_recording(folder / "plain.mcap"), collisions=False)
    divergences = [f for f in found if f.kind == "divergence"]
    assert [f.robot_id for f in divergences] == [ROBOT], found
    _record(folder / "hall.mcap", scene, messages, divergences)
    return folder / "hall.mcap"


@pytest.fixture
def replay(rec_path: Path) -> Iterator[tuple[HallViewer, ReplaySource, DivergenceGhost]]:
    source = ReplaySource(open_recording(rec_path))
    viewer = HallViewer(source.scene, source, off_screen=True, window_size=SIZE)
    ghost = DivergenceGhost(viewer, source)
    yield viewer, source, ghost
    viewer.close()


def event_t(source: ReplaySource) -> float:
    (event,) = [e for e in source.events if e.kind == "failure" and "divergence" in e.detail]
    return event.t_s


def render(
    viewer: HallViewer, source: ReplaySource, ghost: DivergenceGhost, t_s: float
) -> np.ndarray:
    source.seek(t_s)
    viewer.update(now_s=1.0)
    ghost.update()
    x, y, z = viewer.robots.head_position(ROBOT)
    viewer.plotter.camera_position = [(x - 3.5, y - 3.5, z + 0.8), (x, y, z - 0.6), (0, 0, 1)]
    viewer.plotter.render()
    image = viewer.plotter.screenshot(return_img=True)
    assert image is not None
    return np.asarray(image).astype(int)


def around_robot(viewer: HallViewer, image: np.ndarray) -> np.ndarray:
    """The part of the picture around K1-01 (the LED panels, cyan text, lie outside it)."""
    x, y, z = viewer.robots.head_position(ROBOT)
    col, top = world_to_pixel(viewer, (x, y, z + 0.4))
    _, bottom = world_to_pixel(viewer, (x, y, 0.0))
    return image[max(0, top) : bottom + 10, max(0, col - 200) : col + 200]


def cyan(image: np.ndarray) -> np.ndarray:
    """Pixels the cyan ghost tints: green and blue alike, well above red (not the blue hub)."""
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    mask: np.ndarray = (g - r > 50) & (b - r > 50) & (np.abs(g - b) < 50)
    return mask


def test_the_ghost_shows_the_prediction_where_the_report_jumped(
    replay: tuple[HallViewer, ReplaySource, DivergenceGhost],
) -> None:
    viewer, source, ghost = replay
    t = event_t(source)
    assert JUMP_S <= t < JUMP_S + CHECK_S + 0.011
    assert ghost.visible  # on by default
    assert ghost.toggle() is False  # the window's g key
    without = render(viewer, source, ghost, t)
    assert not ghost.shown
    assert ghost.toggle() is True
    with_ghost = render(viewer, source, ghost, t)
    assert ghost.shown == (ROBOT,)
    new = cyan(with_ghost) & ~cyan(without)
    assert new.sum() > 300, new.sum()
    rows, cols = np.nonzero(new)
    x, y, z = viewer.robots.head_position(ROBOT)
    col, row = world_to_pixel(viewer, (x, y, z - 0.5))
    assert abs(cols.mean() - col) < SIZE[0] / 6 and abs(rows.mean() - row) < SIZE[1] / 4
    assert cyan(around_robot(viewer, without)).sum() < 20  # nothing else there is cyan
    # the ghost's arms stand where the twin predicted: at most the speed-limit reach out
    predicted = ghost.prediction(ROBOT, t)
    assert predicted is not None
    reach = 14.0 * DIVERGENCE_SPEED_FACTOR * (CHECK_S)  # the K1 shoulder's 14 rad/s
    assert predicted["left_shoulder_roll"] == pytest.approx(reach, rel=0.05)
    assert predicted["right_shoulder_roll"] == pytest.approx(-reach, rel=0.05)
    assert viewer.world.joint_positions(ROBOT)["left_shoulder_roll"] == pytest.approx(2.5)


def test_no_ghost_before_the_divergence_nor_after_its_window(
    replay: tuple[HallViewer, ReplaySource, DivergenceGhost],
) -> None:
    viewer, source, ghost = replay
    t = event_t(source)
    for when in (JUMP_S - 0.5, t + ghost.window_s + 0.3):
        shown = render(viewer, source, ghost, when)
        assert not ghost.shown
        ghost.visible = False
        hidden = render(viewer, source, ghost, when)
        ghost.visible = True
        assert np.array_equal(around_robot(viewer, shown), around_robot(viewer, hidden))
        assert cyan(around_robot(viewer, shown)).sum() < 20
    # inside the window, with the reports steady again, the ghost coincides and tints
    render(viewer, source, ghost, t + 0.5)
    assert ghost.shown == (ROBOT,)
    assert ghost.prediction(ROBOT, t + 0.5) == pytest.approx(
        dict(zip(source.robots[ROBOT].joint_names, source.robots[ROBOT].positions, strict=True))
    )


def test_the_ghost_uses_the_detectors_own_prediction(
    replay: tuple[HallViewer, ReplaySource, DivergenceGhost],
) -> None:
    _, source, ghost = replay
    (event,) = [e for e in source.events if "divergence" in e.detail]
    details = msgspec.json.decode(event.detail, type=FailureEvent).details
    found = re.search(r"(\w+) reported .* twin predicted at most (-?[\d.]+) rad", details)
    assert found is not None, details
    name, said = found.groups()
    predicted = ghost.prediction(ROBOT, event.t_s)
    assert predicted is not None
    assert predicted[name] == pytest.approx(float(said), abs=5e-4)
    reports = source.joint_reports(ROBOT, event.t_s, CHECK_S)
    assert reports is not None
    dt_s, before, reported = reports
    velocity = [get_model("kestrel_k1").joint(n).velocity_limit for n in predicted]
    again = predict_envelope(before, reported, velocity, dt_s, DIVERGENCE_SPEED_FACTOR)
    assert list(predicted.values()) == again.tolist()


def test_clip_draws_the_ghost_unless_no_ghost(rec_path: Path, tmp_path: Path) -> None:
    import imageio.v3 as iio

    source = ReplaySource(open_recording(rec_path))
    (event,) = [e for e in source.events if "divergence" in e.detail]
    frames = {}
    for flag in ("--ghost", "--no-ghost"):
        clip = tmp_path / f"{flag}.mp4"
        done = run_replay(str(rec_path), "--clip", str(clip), "--event", event.id, "--before", "0",
                        "--after", "0.04", "--size", "1280x720", flag, cwd=tmp_path)  # fmt: skip
        assert done.returncode == 0, done.stderr
        (frames[flag],) = iio.imread(clip, index=None).astype(int)  # one frame: the event's
    # where the ghost is drawn the picture turns cyan: green and blue up, red not
    shift = frames["--ghost"] - frames["--no-ghost"]
    tinted = (shift[..., 1] > 25) & (shift[..., 2] > 25) & (shift[..., 0] < 10)
    rows, cols = np.nonzero(tinted)
    assert len(rows) > 80, len(rows)
    # ... in one place: where the clip's (home) camera sees K1-01
    viewer = HallViewer(source.scene, source, off_screen=True, window_size=(1280, 720))
    try:
        source.seek(event.t_s)
        viewer.update(now_s=0.0)
        viewer.plotter.render()
        x, y, z = viewer.robots.head_position(ROBOT)
        col, row = world_to_pixel(viewer, (x, y, z - 0.5))
    finally:
        viewer.close()
    near = np.hypot(rows - row, cols - col) < 40
    assert near.mean() > 0.9, (np.median(rows), np.median(cols), row, col)
