"""``twin replay``: a recording in the viewer, scrubbed interactively or cut to a clip.

The scene comes from the recording's own ``scene.yaml`` attachment, so a recording
replays on any machine. A window is chosen from ``--event ID`` (its time, ``--before``
and ``--after`` it, 5 s each by default) or ``--at SECONDS`` (from there, ``--before``
0 s, ``--after`` to the end), else the whole recording. ``--clip OUT.mp4`` renders that
window off screen at ``--speed`` (no display needed); otherwise a window opens with a
timeline slider, event markers and key bindings. Robots in divergence get a translucent
cyan ghost at the twin's prediction (:mod:`viz.ghost`), on by default: ``--no-ghost``
leaves it out, ``g`` toggles it in the window.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Final

import typer
from rich.console import Console

from scenes import SceneError, parse_scene
from twin.cli.common import EXIT_BAD_INPUT
from twin.record.recording import RecordingError, open_recording
from twin.record.replay_source import ReplaySource

if TYPE_CHECKING:
    from viz.ghost import DivergenceGhost
    from viz.viewer import HallViewer

log = logging.getLogger(__name__)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


CLIP_FPS: Final = 24
EVENT_MARGIN_S: Final = 5.0
SPEED_STEPS: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0)


class ReplayInputError(ValueError):
    """A replay request that does not fit the recording (the message says why)."""


def load_source(path: Path) -> ReplaySource:
    """Open a recording and index it; ReplayInputError with one readable line if it is bad."""
    try:
        recording = open_recording(path)
        scene = parse_scene(recording.scene_text, f"{path}:scene.yaml")
        return ReplaySource(recording, scene)
    except RecordingError as exc:
        raise ReplayInputError(str(exc)) from None
    except SceneError as exc:
        first = exc.problems[0] if exc.problems else "invalid"
        raise ReplayInputError(f"{path}: its scene.yaml attachment is not valid: {first}") from None


def choose_window(
    source: ReplaySource,
    *,
    event_id: str | None,
    at_s: float | None,
    before_s: float | None,
    after_s: float | None,
) -> tuple[float, float]:
    """The (start, end) seconds on the timeline that the options name, clamped."""
    end = source.duration_s
    if event_id is not None:
        event = source.event(event_id)
        if event is None:
            known = ", ".join(f"{e.id} ({e.kind} {e.source})" for e in source.events) or "none"
            raise ReplayInputError(f"no event {event_id} in the recording; known ids: {known}")
        centre = event.t_s
        before = EVENT_MARGIN_S if before_s is None else before_s
        after = EVENT_MARGIN_S if after_s is None else after_s
    elif at_s is not None:
        if not 0.0 <= at_s <= end:
            raise ReplayInputError(f"--at {at_s:g} is outside the recording (0..{end:.3f} s)")
        centre = at_s
        before = 0.0 if before_s is None else before_s
        after = end - at_s if after_s is None else after_s
    else:
        return 0.0, end
    return max(0.0, centre - before), min(end, centre + after)


def render_clip(
    viewer: HallViewer,
    source: ReplaySource,
    path: Path,
    window: tuple[float, float],
    *,
    speed: float,
    fps: int = CLIP_FPS,
    ghost: DivergenceGhost | None = None,
) -> int:
    """Render ``window`` (timeline seconds) at ``speed`` to an MP4; returns frames written."""
    start, end = window
    frames = max(1, round((end - start) / speed * fps))
    viewer.plotter.open_movie(str(path), framerate=fps, quality=6, macro_block_size=1)
    try:
        for frame in range(frames):
            source.seek(start + frame * speed / fps)
            viewer.update(frame / fps)
            if ghost is not None:
                ghost.update()
            viewer.plotter.add_text(
                f"REPLAY t = {source.t_s:7.2f} s  x{speed:g}",
                position="upper_right", font_size=10, color="black", name="replay-clock",
            )  # fmt: skip
            viewer.plotter.write_frame()
    finally:
        viewer.plotter.mwriter.close()
    return frames


def run_replay(
    path: Path,
    *,
    event_id: str | None,
    at_s: float | None,
    before_s: float | None,
    after_s: float | None,
    speed: float,
    loop: bool,
    clip: Path | None,
    size: str,
    ghost: bool = True,
) -> None:
    """Open the viewer on a recording; a clip (off screen) or an interactive window."""
    import pyvista as pv

    from twin.cli.view import has_display
    from viz.ghost import DivergenceGhost
    from viz.screen import parse_size
    from viz.viewer import HallViewer

    try:
        window_size = parse_size(size)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        source = load_source(path)
        window = choose_window(
            source, event_id=event_id, at_s=at_s, before_s=before_s, after_s=after_s
        )
    except ReplayInputError as exc:
        err.print(f"twin replay: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    source.speed = speed
    off_screen = clip is not None or not has_display()
    if clip is None and off_screen:
        err.print("twin replay: no display here: use --clip OUT.mp4", markup=False)
        raise typer.Exit(1)
    if off_screen:
        pv.OFF_SCREEN = True
    viewer = HallViewer(source.scene, source, off_screen=off_screen, window_size=window_size)
    try:
        ghosts = DivergenceGhost(viewer, source, visible=ghost)
        if clip is not None:
            frames = render_clip(viewer, source, clip, window, speed=source.speed, ghost=ghosts)
            out.print(
                f"clip: {clip} ({frames} frames, {window[0]:.2f}..{window[1]:.2f} s "
                f"at x{source.speed:g})",
                markup=False,
            )
        else:
            _interactive(viewer, source, window, loop, ghosts)
    except RecordingError as exc:  # a message that does not decode
        err.print(f"twin replay: {exc}", markup=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    finally:
        viewer.close()
        warning = source.recording.damage.line()  # the chunks skipped in what was shown
        if warning:
            err.print(f"twin replay: warning: {warning}", markup=False)


def _interactive(
    viewer: HallViewer,
    source: ReplaySource,
    window: tuple[float, float],
    loop: bool,
    ghost: DivergenceGhost,
) -> None:  # pragma: no cover - needs a display
    import time

    plotter = viewer.plotter
    source.loop = window if loop else None
    source.seek(window[0])
    source.playing = True
    slider = plotter.add_slider_widget(
        lambda value: source.seek(float(value)),
        rng=[0.0, max(source.duration_s, 1e-3)],
        value=window[0],
        title="t (s)",
        pointa=(0.05, 0.08),
        pointb=(0.95, 0.08),
        style="modern",
        interaction_event="always",
    )
    marks = "  ".join(f"#{e.id} {e.kind} {e.t_s:.1f}s" for e in source.events[:20])
    plotter.add_text(
        f"events: {marks or 'none'}", position="lower_left", font_size=8, color="black"
    )
    plotter.add_text(
        "space play/pause | Left/Right 1/30 s | +/- speed | n/p next/prev event | g ghost | q quit",
        position="upper_left", font_size=9, color="black",
    )  # fmt: skip

    def jump(event_t: float | None) -> None:
        if event_t is not None:
            source.seek(event_t)

    def step(delta_s: float) -> None:
        source.playing = False
        source.seek(source.t_s + delta_s)

    def faster(up: bool) -> None:
        speeds = [s for s in SPEED_STEPS if (s > source.speed if up else s < source.speed)]
        if speeds:
            source.speed = speeds[0] if up else speeds[-1]

    def toggle() -> None:
        source.playing = not source.playing

    plotter.add_key_event("space", toggle)
    plotter.add_key_event("Right", lambda: step(1.0 / 30.0))
    plotter.add_key_event("Left", lambda: step(-1.0 / 30.0))
    plotter.add_key_event("plus", lambda: faster(True))
    plotter.add_key_event("minus", lambda: faster(False))
    nxt = source.next_event
    prv = source.previous_event
    plotter.add_key_event("n", lambda: jump(e.t_s if (e := nxt(source.t_s)) else None))
    plotter.add_key_event("p", lambda: jump(e.t_s if (e := prv(source.t_s)) else None))
    plotter.add_key_event("g", ghost.toggle)
    last = time.monotonic()

    def tick(_step: int) -> None:
        nonlocal last
        now = time.monotonic()
        source.advance(now - last)
        last = now
        slider.GetRepresentation().SetValue(source.t_s)
        plotter.add_text(
            f"REPLAY t = {source.t_s:7.2f} s  x{source.speed:g}"
            + ("" if source.playing else "  (paused)"),
            position="upper_right", font_size=10, color="black", name="replay-clock",
        )  # fmt: skip
        viewer.update()
        ghost.update()
        plotter.render()

    viewer.update()
    ghost.update()
    plotter.add_timer_event(max_steps=10**9, duration=33, callback=tick)
    plotter.show(auto_close=False)
