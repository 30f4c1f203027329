"""One browser's page: its controls, its colour mode, its selection, its camera.

Everything a page can send is a view change for that page alone: the colour mode, the
selected robot (a click), the camera, the tour. The controls are per client (viser's
``client.gui``), so a kiosk page has none, and one visitor's choices never reach another's
page. A page colouring robots by effort, position or speed draws its own copy of the robot
nodes in its client scope (shadowing the shared ones, which every manufacturer-coloured page
shares); pose updates for it cost one more message per mesh kind per frame.

A URL with ``?kiosk`` is told apart in the browser: a small hook in the page presses the
page's own "Kiosk" button (viser's websocket carries no URL), and the server then takes the
page's controls away and starts its tour.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
import viser
from matplotlib import colormaps

from sync.fanout import RobotView
from viz.joint_panel import JointIndex
from viz.readout import COLOUR_MODES, COLOUR_TITLES, ColourBy
from viz.tour import CameraTour
from viz.web.robots import RobotGeometry, RobotNodes

log = logging.getLogger(__name__)

TOUR_BUTTON: Final = "Tour"
KIOSK_BUTTON: Final = "Kiosk"
KIOSK_HOOK: Final = (
    '<img src="data:," alt="" style="display:none" onerror="'
    "if(new URLSearchParams(location.search).has('kiosk')){"
    "var t=setInterval(function(){"
    "var b=[].slice.call(document.querySelectorAll('button')).find("
    "function(x){return x.textContent.trim()==='" + KIOSK_BUTTON + "'});"
    "if(b){b.click();clearInterval(t);}},200);}"
    '">'
)
HELP_MD: Final = (
    "**Read-only view of the live hall.** Click a robot for its joints; drag to look around."
)
KIOSK_MD: Final = "**hall twin**: the live floor"
_LABELS: Final[dict[str, str]] = {
    "manufacturer": "manufacturer",
    "effort": "effort / rating",
    "position": "position / range",
    "velocity": "speed / limit",
}


def legend_html(mode: str, swatches: Mapping[str, tuple[int, int, int]]) -> str:
    """The colour legend: manufacturers' colours, or the turbo scale of a joint quantity."""
    if mode == "manufacturer":
        rows = "".join(
            f'<div><span style="display:inline-block;width:12px;height:12px;'
            f'background:rgb{rgb};margin-right:6px"></span>{name}</div>'
            for name, rgb in sorted(swatches.items())
        )
        return f'<div style="font-size:12px">{rows}<div>grey: STALE or GONE</div></div>'
    turbo = colormaps["turbo"]
    stops = ",".join(
        "rgb({},{},{})".format(*(int(255 * c) for c in turbo(u)[:3]))
        for u in np.linspace(0.0, 1.0, 9)
    )
    return (
        f'<div style="font-size:12px">{COLOUR_TITLES[mode]}'
        f'<div style="height:12px;background:linear-gradient(to right,{stops})"></div>'
        '<div style="display:flex;justify-content:space-between"><span>0</span>'
        "<span>1</span></div><div>grey: STALE or GONE</div></div>"
    )


def joints_markdown(robot_id: str, view: RobotView | None, index: JointIndex | None) -> str:
    """A robot's joints: position, where it is in its range, effort over its rating."""
    if view is None or index is None or not view.positions:
        return f"**{robot_id}**: no joint state yet"
    lines = [
        f"**{robot_id}** ({view.manufacturer}, {view.task}, {view.liveness})",
        "",
        "| joint | deg | range | effort |",
        "|---|---:|---:|---:|",
    ]
    for j, name in enumerate(index.names):
        position = view.positions[j]
        lower, upper = index.lower[j], index.upper[j]
        span = upper - lower
        fraction = (position - lower) / span if math.isfinite(span) and span > 0 else math.nan
        effort = abs(view.efforts[j]) / max(index.effort_limit[j], 1e-9) if view.efforts else 0.0
        in_range = f"{100 * fraction:.0f} %" if math.isfinite(fraction) else "-"
        lines.append(
            f"| {name} | {math.degrees(position):.1f} | {in_range} | {100 * effort:.0f} % |"
        )
    return "\n".join(lines)


class PageExtras(Protocol):
    """More on every page than the live floor has (a replay's clock and its controls)."""

    help_md: str  # the help line at the top of a page's controls
    kiosk_md: str  # what a kiosk page says

    def add(self, page: Page) -> None:
        """Add this page's own controls (a page with controls, once built)."""
        ...

    def update(self, pages: Sequence[Page]) -> None:
        """Bring the pages up to date; called once a frame by the viewer's loop."""
        ...

    def forget(self, client_id: int) -> None:
        """A page went away."""
        ...


@dataclass
class Page:
    """The state of one connected browser."""

    client: viser.ClientHandle
    tour: CameraTour
    kiosk: bool
    colour_by: ColourBy = "manufacturer"
    selected: str | None = None
    touring: bool = False
    tour_started_s: float = 0.0
    own_robots: RobotNodes | None = None
    controls: list[Any] = field(default_factory=list)  # GUI handles, each with remove()
    legend: viser.GuiHtmlHandle | None = None
    joints: viser.GuiMarkdownHandle | None = None
    notice: viser.NotificationHandle | None = None
    notice_text: str = ""
    help_md: str = HELP_MD
    kiosk_md: str = KIOSK_MD

    def build_controls(
        self,
        swatches: Mapping[str, tuple[int, int, int]],
        on_colour: Callable[[Page, ColourBy], None],
        on_tour: Callable[[Page], None],
        on_kiosk: Callable[[Page], None],
    ) -> None:
        """The page's controls (none in kiosk mode): help, colour mode, legend, tour, joints."""
        gui = self.client.gui
        gui.configure_theme(control_layout="floating", show_share_button=False, show_logo=False)
        self.controls.append(gui.add_markdown(self.help_md))
        dropdown = gui.add_dropdown(
            "Colour by",
            options=tuple(_LABELS[m] for m in COLOUR_MODES),
            initial_value="manufacturer",
        )
        self.controls.append(dropdown)
        self.legend = gui.add_html(legend_html("manufacturer", swatches))
        self.controls.append(self.legend)
        button = gui.add_button(TOUR_BUTTON, hint="Start or stop a slow camera tour")
        self.controls.append(button)
        kiosk = gui.add_button(KIOSK_BUTTON, hint="The tour, without controls (reload to leave)")
        self.controls.append(kiosk)
        self.joints = gui.add_markdown("Click a robot for its joints.")
        self.controls.append(self.joints)
        self.controls.append(gui.add_html(KIOSK_HOOK))

        @dropdown.on_update
        def _(_event: viser.GuiEvent) -> None:  # type: ignore[type-arg]
            mode = next(m for m in COLOUR_MODES if _LABELS[m] == dropdown.value)
            on_colour(self, mode)  # type: ignore[arg-type]

        @button.on_click
        def _(_event: viser.GuiEvent) -> None:  # type: ignore[type-arg]
            on_tour(self)

        @kiosk.on_click
        def _(_event: viser.GuiEvent) -> None:  # type: ignore[type-arg]
            on_kiosk(self)

    def enter_kiosk(self, now_s: float) -> None:
        """No controls, the camera on the tour."""
        self.kiosk = True
        for control in self.controls:
            control.remove()
        self.controls = []
        self.legend = self.joints = None
        # an empty panel would be replaced by viser's own (server address, scene tree)
        self.client.gui.configure_theme(show_share_button=False, show_logo=False)
        self.client.gui.add_markdown(self.kiosk_md)
        self.start_tour(now_s)

    def start_tour(self, now_s: float) -> None:
        """Follow the camera tour from its start."""
        self.touring = True
        self.tour_started_s = now_s

    def move_camera(self, now_s: float) -> None:
        """Where the tour is now (kiosk or touring pages)."""
        if not self.touring:
            return
        position, focal = self.tour.camera_at(now_s - self.tour_started_s)
        with self.client.atomic():
            self.client.camera.position = position
            self.client.camera.look_at = focal

    def set_colour_mode(
        self,
        mode: ColourBy,
        scene_geometry: RobotGeometry,
        swatches: Mapping[str, tuple[int, int, int]],
    ) -> None:
        """Colour this page's robots by ``mode``: its own robot nodes unless manufacturer."""
        self.colour_by = mode
        if mode == "manufacturer":
            if self.own_robots is not None:
                self.own_robots.remove()
                self.own_robots = None
        elif self.own_robots is None:
            self.own_robots = RobotNodes(self.client.scene, scene_geometry)
        if self.legend is not None:
            self.legend.content = legend_html(mode, swatches)

    def show_notice(self, text: str) -> None:
        """A notice on the page (the twin's state); an empty text removes it."""
        if text == self.notice_text:
            return
        self.notice_text = text
        if self.notice is not None:
            self.notice.remove()
            self.notice = None
        if text:
            self.notice = self.client.add_notification(
                "hall twin", text, loading=True, with_close_button=False
            )
