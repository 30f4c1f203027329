"""The live twin as a web page's source: one that may not be there yet, or may go away.

:class:`LiveLink` wraps :class:`viz.sources.LiveSource` (the Clone-pattern client of the
twin's fan-out): while no twin answers on the snapshot endpoint it retries every
``retry_s`` and says so (:attr:`LiveLink.notice`); once connected, a twin silent for
``quiet_s`` is asked for its status, and a twin that does not answer is reported until it
speaks again. A restarted twin (a new run id on the fan-out) is taken in by the client's
own fresh snapshot. Like every viewer it only reads: the fan-out and the snapshot endpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Final

import zmq

from sync.fanout import CraneView, Event, RequestError, RobotView, request_status
from viz.sources import LiveSource, SourceError

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S: Final = 0.5


class LiveLink:
    """A :class:`viz.sources.Source` over a twin that may come and go."""

    def __init__(
        self,
        fanout: str | None,
        snapshot: str | None,
        *,
        retry_s: float = 1.0,
        quiet_s: float = 3.0,
    ) -> None:
        """``fanout`` None: the twin's address is not known yet (:meth:`connect_to`)."""
        self.fanout = fanout
        self.snapshot = snapshot
        self._retry_s = retry_s
        self._quiet_s = quiet_s
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.source: LiveSource | None = None
        self._next_try_s = 0.0
        self._last_news_s = time.monotonic()
        self._next_probe_s = 0.0
        self.answering = False
        self.notice = (
            f"Waiting for the twin at {fanout}; this page connects by itself."
            if fanout
            else "Starting the twin; this page connects by itself."
        )
        self._empty_robots: dict[str, RobotView] = {}
        self._empty_cranes: dict[str, CraneView] = {}

    @property
    def robots(self) -> dict[str, RobotView]:
        return self.source.robots if self.source is not None else self._empty_robots

    @property
    def cranes(self) -> dict[str, CraneView]:
        return self.source.cranes if self.source is not None else self._empty_cranes

    def connect_to(self, fanout: str, snapshot: str) -> None:
        """The twin's address, once known (a demo starts its twin and its page together)."""
        self.fanout, self.snapshot = fanout, snapshot
        self._next_try_s = 0.0

    def poll(self) -> bool:
        """Connect if not yet connected; take in whatever arrived. True if anything changed."""
        now = time.monotonic()
        if self.source is None:
            if self.fanout is None or self.snapshot is None or now < self._next_try_s:
                return False
            try:
                self.source = LiveSource(
                    self.fanout, self.snapshot, context=self._context, timeout_s=_CONNECT_TIMEOUT_S
                )
            except SourceError as exc:
                self._next_try_s = now + self._retry_s
                log.debug("no twin yet: %s", exc)
                return False
            log.info("connected to the twin at %s", self.fanout)
            self._mark_news(now)
            return True
        changed = self.source.poll()
        if changed:
            self._mark_news(now)
        elif now - self._last_news_s > self._quiet_s and now >= self._next_probe_s:
            self._probe(now)
        return changed

    def _mark_news(self, now: float) -> None:
        self._last_news_s = now
        self.answering = True
        self.notice = ""

    def _probe(self, now: float) -> None:
        self._next_probe_s = now + self._retry_s
        try:
            assert self.snapshot is not None  # connected, so known
            request_status(self._context, self.snapshot, timeout_s=_CONNECT_TIMEOUT_S)
        except RequestError:
            if self.answering:
                log.warning("the twin at %s stopped answering", self.snapshot)
            self.answering = False
            self.notice = (
                f"The twin at {self.fanout} is not answering; this page reconnects by itself."
            )
            return
        self._mark_news(now)  # quiet, but there

    def new_events(self) -> Iterator[Event]:
        return self.source.new_events() if self.source is not None else iter(())

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
        self._context.destroy(linger=0)
