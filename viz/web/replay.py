"""``twin web --replay``: a recording on web pages, with one replay clock that all pages share.

:class:`ReplayClock` is the web viewer's :class:`viz.sources.Source` over the same
:class:`twin.record.replay_source.ReplaySource` the desktop replay (``twin replay``) reads: the
recording is indexed once and seeked in, never read a second way. Each page with controls
gets a "Replay" folder: a readout (time, speed, playing or paused, the failures and where
the last jump went), a timeline slider, a Play/Pause button, a speed list (x0.1 .. x10)
and "Next failure", which jumps to the first failure event after the current instant and
pauses there so that the moment is on screen. A kiosk page (``?kiosk``) has no controls and
watches the clock like everyone else; ``twin web --replay --kiosk`` plays the recording in
a loop.

**The clock is shared by every page, not kept per page.** One clock means one world posed
per frame and one set of pose updates written once into viser's shared message buffer, so
the cost of a page stays what it is live (geometry once, then poses), and a hall of visitors
in front of several screens sees the same instant: what someone points at on one screen is
what the others see. A clock per page would need the world posed and the robots' nodes sent
per page (the per-page colour modes already show what that costs: one more message per mesh
kind per frame, per page). The price is that a visitor's play, seek or speed moves everyone's
replay; that is the right trade for a recording watched together (a briefing, a gallery), and
whoever wants a replay of their own runs ``twin replay`` or a second ``twin web --replay``.

Pages stay read-only with respect to the hall: the clock reads a file and no socket, and
what a page sends moves this clock and nothing else. Controls post requests; the viewer's
loop applies them in its own thread at its next frame (:meth:`ReplayClock.poll`), so the
replay source is only ever touched by one thread.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import viser

from sync.fanout import CraneView, Event, RobotView
from twin.record.replay_events import ReplayEvent
from twin.record.replay_source import ReplaySource
from viz.web.page import Page

log = logging.getLogger(__name__)

SPEEDS_X: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0)
PLAY: Final = "Play"
PAUSE: Final = "Pause"
NEXT_FAILURE: Final = "Next failure"
TIMELINE: Final = "Time (s)"
SPEED: Final = "Speed"
STEP_S: Final = 0.05  # the timeline slider's step
_SHOW_EVERY_S: Final = 0.1  # readouts and sliders at most this often (10 Hz)
_TOUCH_HOLD_S: Final = 0.5  # a page's slider is not moved for it while its visitor drags
_SHOWN_FAILURES: Final = 6


def speed_label(speed_x: float) -> str:
    """How a speed shows in the list: ``x0.25``, ``x1``, ``x10``."""
    return f"x{speed_x:g}"


def failure_summary(event: ReplayEvent) -> str:
    """``F0002 fall T3-04``: a failure event's id, detector and robot."""
    try:
        detail = json.loads(event.detail)
    except ValueError:
        detail = {}
    kind = detail.get("kind", "") if isinstance(detail, dict) else ""
    robot = detail.get("robot_id", event.source) if isinstance(detail, dict) else event.source
    return " ".join(part for part in (event.id, str(kind), str(robot)) if part)


@dataclass
class _Controls:
    """One page's replay controls."""

    folder: viser.GuiFolderHandle
    readout: viser.GuiMarkdownHandle
    timeline: viser.GuiSliderHandle[float]
    play: viser.GuiButtonHandle
    speed: viser.GuiDropdownHandle[str]
    touched_s: float = -math.inf  # when its visitor last moved its timeline


class ReplayClock:
    """A recording as the web viewer's source, with the shared clock and per-page controls."""

    def __init__(self, replay: ReplaySource, *, name: str, warning: str = "") -> None:
        """``name``: the recording as pages name it; ``warning``: what its damage report
        says (shown on every page), "" for a whole recording."""
        self.replay = replay
        self.name = name
        self.warning = warning
        self.failures = [e for e in replay.events if e.kind == "failure"]
        self.jumped_to: ReplayEvent | None = None
        self.help_md = (
            f"**Replay of {name}** (read-only). Every page watching shares this replay's "
            "clock. Click a robot for its joints; drag to look around."
        )
        self.kiosk_md = f"**hall twin**: replay of {name}"
        self._requests: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._controls: dict[int, _Controls] = {}
        self._last_s: float | None = None
        self._next_show_s = 0.0

    # -- the Source protocol (the viewer's loop thread) --------------------------------

    @property
    def robots(self) -> dict[str, RobotView]:
        return self.replay.robots

    @property
    def cranes(self) -> dict[str, CraneView]:
        return self.replay.cranes

    def poll(self) -> bool:
        """Apply the pages' requests, then play the wall time since the last poll."""
        with self._lock:
            requests, self._requests = self._requests, []
        for request in requests:
            request()
        now = time.monotonic()
        if self._last_s is not None:
            self.replay.advance(now - self._last_s)
        self._last_s = now
        return self.replay.poll()

    def new_events(self) -> Iterator[Event]:
        return self.replay.new_events()

    def close(self) -> None:
        self.replay.close()

    # -- requests (any thread; applied at the next frame) -------------------------------

    def _post(self, request: Callable[[], None]) -> None:
        with self._lock:
            self._requests.append(request)

    def start(self, *, playing: bool, loop: bool = False) -> None:
        """Play from the start (looping over the whole recording if ``loop``), or stay paused."""

        def apply() -> None:
            self.replay.loop = (0.0, self.replay.duration_s) if loop else None
            self.replay.playing = playing

        self._post(apply)

    def seek(self, t_s: float) -> None:
        """Jump to ``t_s`` on the timeline (clamped to the recording)."""
        self._post(lambda: self._seek(t_s))

    def _seek(self, t_s: float) -> None:
        self.replay.seek(t_s)
        self.jumped_to = None

    def toggle(self) -> None:
        """Play or pause; play at the end starts again from the beginning."""

        def apply() -> None:
            replay = self.replay
            if not replay.playing and replay.t_s >= replay.duration_s - 1e-6:
                self._seek(0.0)
            replay.playing = not replay.playing

        self._post(apply)

    def set_speed(self, speed_x: float) -> None:
        """Playback speed, kept within x0.1 .. x10."""

        def apply() -> None:
            self.replay.speed = speed_x

        self._post(apply)

    def next_failure(self) -> None:
        """Jump to the first failure after now and pause there (nothing if there is none)."""

        def apply() -> None:
            now = self.replay.t_s
            event = next((e for e in self.failures if e.t_s > now + 1e-3), None)
            if event is None:
                return
            self.replay.playing = False
            self.replay.seek(event.t_s)
            self.jumped_to = event
            log.info("replay at failure %s (%.3f s)", failure_summary(event), event.t_s)

        self._post(apply)

    # -- the pages ---------------------------------------------------------------------

    def add(self, page: Page) -> None:
        """Give a page (one with controls) its replay folder, below its help line."""
        gui = page.client.gui
        order = page.controls[0].order + 0.5 if page.controls else None
        replay = self.replay
        with gui.add_folder("Replay", order=order) as folder:
            readout = gui.add_markdown(self.readout())
            timeline = gui.add_slider(
                TIMELINE,
                min=0.0,
                max=max(_stepped(replay.duration_s), STEP_S),
                step=STEP_S,
                initial_value=_stepped(replay.t_s),
                marks=tuple((round(e.t_s, 2), e.id) for e in self.failures[:_SHOWN_FAILURES])
                or None,
            )
            play = gui.add_button(
                PAUSE if replay.playing else PLAY, hint="Play or pause (every page)"
            )
            speed = gui.add_dropdown(
                SPEED,
                options=tuple(speed_label(s) for s in SPEEDS_X),
                initial_value=speed_label(_nearest_speed(replay.speed)),
            )
            jump = gui.add_button(
                NEXT_FAILURE,
                disabled=not self.failures,
                hint="Jump to the next failure and pause there",
            )
        controls = _Controls(folder, readout, timeline, play, speed)

        @timeline.on_update
        def _(event: viser.GuiEvent) -> None:  # type: ignore[type-arg]
            if event.client is None:  # the clock moved it, not the visitor
                return
            controls.touched_s = time.monotonic()
            self.seek(float(timeline.value))

        @play.on_click
        def _(_event: viser.GuiEvent) -> None:  # type: ignore[type-arg]
            self.toggle()

        @speed.on_update
        def _(event: viser.GuiEvent) -> None:  # type: ignore[type-arg]
            if event.client is not None:
                self.set_speed(float(speed.value.lstrip("x")))

        @jump.on_click
        def _(_event: viser.GuiEvent) -> None:  # type: ignore[type-arg]
            self.next_failure()

        page.controls.append(folder)
        with self._lock:
            self._controls[page.client.client_id] = controls

    def forget(self, client_id: int) -> None:
        """A page went away."""
        with self._lock:
            self._controls.pop(client_id, None)

    def readout(self) -> str:
        """What the pages' readout says now (Markdown)."""
        replay = self.replay
        state = "playing" if replay.playing else "paused"
        lines = [
            f"t = **{replay.t_s:.2f} s** of {replay.duration_s:.2f} s · "
            f"{speed_label(replay.speed)} · {state}"
        ]
        if self.failures:
            shown = ", ".join(f"{e.id} {e.t_s:.1f} s" for e in self.failures[:_SHOWN_FAILURES]) + (
                " ..." if len(self.failures) > _SHOWN_FAILURES else ""
            )
            lines.append(f"failures: {shown}")
        else:
            lines.append("failures: none recorded")
        if self.jumped_to is not None:
            lines.append(f"at failure {failure_summary(self.jumped_to)}")
        if self.warning:
            lines.append(f"warning: {self.warning}")
        return "\n\n".join(lines)

    def update(self, pages: Sequence[Page]) -> None:
        """Bring every page's readout and controls to the clock (at most 10 times a second);
        called by the viewer's loop each frame."""
        now = time.monotonic()
        if now < self._next_show_s:
            return
        self._next_show_s = now + _SHOW_EVERY_S
        text = self.readout()
        t_s = _stepped(self.replay.t_s)
        label = PAUSE if self.replay.playing else PLAY
        speed = speed_label(_nearest_speed(self.replay.speed))
        for page in pages:
            with self._lock:
                controls = self._controls.get(page.client.client_id)
                if controls is not None and page.kiosk:  # its controls were taken away
                    del self._controls[page.client.client_id]
                    continue
            if controls is None:
                continue
            if controls.readout.content != text:
                controls.readout.content = text
            if now - controls.touched_s > _TOUCH_HOLD_S:
                controls.timeline.value = t_s  # type: ignore[misc]  # sent only if changed
            if controls.play.label != label:
                controls.play.label = label
            controls.speed.value = speed  # type: ignore[misc]


def _stepped(t_s: float) -> float:
    return round(round(t_s / STEP_S) * STEP_S, 2)


def _nearest_speed(speed_x: float) -> float:
    return min(SPEEDS_X, key=lambda s: abs(math.log(s / speed_x)))
