"""Per-robot bookkeeping on the receiving side: sequence gaps, epochs, liveness, rates, latency.

Nothing here reads a clock or a socket: callers pass ``now_ns`` (monotonic or wall,
consistently), so every rule is exact under test.

Liveness of a robot, from the time since its last accepted joint state and the
nominal period T of its joint-state stream:

- LIVE  while that age is at most 1.5 T;
- LATE  once it exceeds 1.5 T (a message is overdue);
- STALE once it exceeds 3 T (three nominal periods without a joint state), or when it
  sends only heartbeats or base poses;
- GONE  when nothing at all arrived for ``gone_after_s`` (default 10 s), or after a
  heartbeat in mode ``shutdown``. A new joint state makes the robot LIVE again.

That is the bare rule (:meth:`LivenessClock.state`); the live twin's
:meth:`LivenessClock.judge` adds slack for its own timing and hysteresis.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from sync.protocol import MAX_SEQ_JUMP

LATE_PERIODS: Final = 1.5
STALE_PERIODS: Final = 3.0
GONE_AFTER_S: Final = 10.0
STALE_SLACK_S: Final = 0.035
"""The live twin says STALE only 3 T + this after the last joint state (within 3 T + 50 ms
with its 240 Hz tick); see LivenessClock.judge."""
LATE_SLACK_S: Final = 0.010
LATE_HOLD_S: Final = 0.020
"""The live twin says LATE only once a joint state is overdue this much beyond 1.5 T +
LATE_SLACK_S: on a CPU-starved machine a stream's gaps jitter by 20-30 ms with no fault,
and a LATE that comes and goes with each gap flickered up to 46 times a second."""
LATE_CLEAR_S: Final = 0.25
"""Once LATE, LIVE again only after the stream has been on time for this long: a stream
that keeps running late reads LATE steadily, and every LATE is on show long enough to see."""
RECOVER_MESSAGES: Final = 2
_RATE_WINDOW_NS: Final = 1_000_000_000
_LATENCY_SAMPLES: Final = 4096
_OFFSET_SAMPLES: Final = 512
PERCENTILES_EVERY_NS: Final = 1_000_000_000


class Liveness(enum.StrEnum):
    """How current a robot's data is (see the module docstring)."""

    LIVE = "LIVE"
    LATE = "LATE"
    STALE = "STALE"
    GONE = "GONE"


_RANK: Final = {Liveness.LIVE: 0, Liveness.LATE: 1, Liveness.STALE: 2, Liveness.GONE: 3}


class SeqVerdict(enum.Enum):
    """What a stream tracker decided about one message."""

    ACCEPT = "accept"
    NEW_EPOCH = "new_epoch"
    RESYNC = "resync"  # an implausible forward jump: accepted, not counted as losses
    STALE_SEQ = "stale_seq"  # duplicate or older than the last accepted: dropped, counted
    STALE_EPOCH = "stale_epoch"  # from an epoch this stream already left: dropped, counted


_RETIRED_EPOCHS_KEPT: Final = 8


@dataclass
class StreamTracker:
    """Sequence numbers of one (source, kind) stream: gaps, duplicates, epoch changes."""

    epoch: int = 0
    last_seq: int = -1
    received: int = 0
    gaps: int = 0  # messages missing (sum of jumps)
    stale: int = 0  # duplicates / out of order, dropped (``stale_seq``)
    stale_epoch: int = 0  # of an epoch this stream already left, dropped
    joined_mid_epoch: int = 0  # first message seen of an epoch already running: a baseline
    epoch_changes: int = 0
    resyncs: int = 0
    retired: deque[int] = field(default_factory=lambda: deque(maxlen=_RETIRED_EPOCHS_KEPT))

    def observe(self, epoch: int, seq: int) -> SeqVerdict:
        """Account for one message; tell the caller whether to use it.

        Every epoch starts at seq 0, so when the stream moves to a new epoch whose first
        message has seq N, N messages were lost before it: they count as gaps too. But the
        very first message this tracker sees is a baseline, whatever its seq: a twin that
        starts (or restarts) while the gateway runs could not have received what came
        before (``joined_mid_epoch`` counts those joins). Messages of an epoch the stream
        already left (an old connection's backlog, a second gateway) are dropped, and a
        forward jump beyond MAX_SEQ_JUMP is a resync, not billions of losses.
        """
        if epoch != self.epoch:
            if epoch in self.retired:
                self.stale_epoch += 1
                return SeqVerdict.STALE_EPOCH
            first = self.epoch == 0
            if not first:
                self.retired.append(self.epoch)
            self.epoch = epoch
            self.last_seq = seq
            self.received += 1
            if first:
                if seq > 0:
                    self.joined_mid_epoch += 1
                return SeqVerdict.ACCEPT
            if seq > MAX_SEQ_JUMP:
                self.resyncs += 1
            else:
                self.gaps += seq
            self.epoch_changes += 1
            return SeqVerdict.NEW_EPOCH
        if seq <= self.last_seq:
            self.stale += 1
            return SeqVerdict.STALE_SEQ
        jump = seq - self.last_seq - 1
        self.last_seq = seq
        self.received += 1
        if jump > MAX_SEQ_JUMP:
            self.resyncs += 1
            return SeqVerdict.RESYNC
        self.gaps += jump
        return SeqVerdict.ACCEPT

    def in_order(self, epoch: int, seq: int) -> bool:
        """The common case of :meth:`observe`, for the ingest hot path: if ``seq`` of the
        current epoch is newer than the last and no resync, account for it exactly as
        :meth:`observe` would (ACCEPT) and say True; otherwise change nothing, say False."""
        if epoch != self.epoch or seq <= self.last_seq:
            return False
        jump = seq - self.last_seq - 1
        if jump > MAX_SEQ_JUMP:
            return False
        self.last_seq = seq
        self.received += 1
        self.gaps += jump
        return True


@dataclass
class RateMeter:
    """Messages and bytes per second over the last complete one-second window."""

    window_start_ns: int | None = None
    window_msgs: int = 0
    window_bytes: int = 0
    msgs_per_s: float = 0.0
    bytes_per_s: float = 0.0
    total_msgs: int = 0
    total_bytes: int = 0

    def add(self, now_ns: int, size_bytes: int) -> None:
        """Count one message of ``size_bytes``."""
        self.roll(now_ns)
        self.window_msgs += 1
        self.window_bytes += size_bytes
        self.total_msgs += 1
        self.total_bytes += size_bytes

    def add_many(self, now_ns: int, messages: int, size_bytes: int) -> None:
        """Count ``messages`` messages of ``size_bytes`` in all (taken in elsewhere)."""
        self.roll(now_ns)
        self.window_msgs += messages
        self.window_bytes += size_bytes
        self.total_msgs += messages
        self.total_bytes += size_bytes

    def roll(self, now_ns: int) -> None:
        """Close the window if a second has passed (also when nothing arrives)."""
        if self.window_start_ns is None:
            self.window_start_ns = now_ns
            return
        elapsed = now_ns - self.window_start_ns
        if elapsed >= _RATE_WINDOW_NS:
            seconds = elapsed / 1e9
            # a window with silence after it: the rate drops to what arrived, spread over it
            self.msgs_per_s = self.window_msgs / seconds
            self.bytes_per_s = self.window_bytes / seconds
            self.window_start_ns = now_ns
            self.window_msgs = 0
            self.window_bytes = 0


class SampleRing:
    """The newest ``capacity`` integer samples in a preallocated array (no per-read copy
    into numpy: ``twin status`` reads every robot's percentiles)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._values = np.zeros(capacity, dtype=np.int64)
        self._next = 0
        self.count = 0
        self.appended = 0  # every append ever (tells a reader whether anything changed)

    def append(self, value: int) -> None:
        """Keep ``value``, forgetting the oldest sample when full."""
        self._values[self._next] = value
        self._next = (self._next + 1) % self.capacity
        self.appended += 1
        if self.count < self.capacity:
            self.count += 1

    def clear(self) -> None:
        """Forget every sample."""
        self._next = self.count = 0
        self.appended += 1

    def values(self) -> NDArray[np.int64]:
        """The samples held (a view, oldest order not kept)."""
        return self._values[: self.count]

    def p50_p99(self) -> tuple[float, float] | None:
        """The 50th and 99th percentiles (nearest rank), or None when empty."""
        n = self.count
        if n == 0:
            return None
        ranks = (int(0.5 * (n - 1)), round(0.99 * (n - 1)))
        part = np.partition(self._values[:n], ranks)
        return float(part[ranks[0]]), float(part[ranks[1]])


@dataclass
class DelayMeter:
    """One-way delay and clock offset of a sender, from (receive time - sender stamp).

    The clock offset is estimated as the smallest (receive - stamp) among recent
    messages, i.e. assuming the fastest message saw ~0 transit time (true to well
    under a millisecond on one host or a LAN). Latency = (time applied - stamp) - offset.
    """

    # running minimum of (receive - stamp) over the current and the previous block of
    # _OFFSET_SAMPLES messages: O(1) per message, forgets within two blocks
    _block_min_ns: int | None = None
    _previous_min_ns: int | None = None
    _block_count: int = 0
    _latency_ns: SampleRing = field(default_factory=lambda: SampleRing(_LATENCY_SAMPLES))
    raw_latency_ns: SampleRing = field(default_factory=lambda: SampleRing(_LATENCY_SAMPLES))
    """Applied minus stamp, without the offset correction (the benchmarks read them)."""
    phase_ns: int = 0  # see percentiles_ms
    # raw -> (samples appended, computed at, (p50, p99) ms): see percentiles_ms
    _percentiles: dict[bool, tuple[int, int, tuple[float, float] | None]] = field(
        default_factory=dict
    )

    def on_receive(self, stamp_ns: int, received_ns: int) -> None:
        """A message stamped ``stamp_ns`` arrived at ``received_ns`` (receiver's clock)."""
        raw = received_ns - stamp_ns
        if self._block_min_ns is None or raw < self._block_min_ns:
            self._block_min_ns = raw
        self._block_count += 1
        if self._block_count >= _OFFSET_SAMPLES:
            self._previous_min_ns, self._block_min_ns, self._block_count = (
                self._block_min_ns,
                None,
                0,
            )

    def reset(self) -> None:
        """Forget everything (a new epoch may come with a new clock)."""
        self._block_min_ns = self._previous_min_ns = None
        self._block_count = 0
        self._latency_ns.clear()
        self.raw_latency_ns.clear()
        self._percentiles.clear()

    @property
    def offset_ns(self) -> int:
        """Estimated receiver clock minus sender clock."""
        known = [m for m in (self._block_min_ns, self._previous_min_ns) if m is not None]
        return min(known) if known else 0

    def on_applied(self, stamp_ns: int, applied_ns: int) -> None:
        """The message stamped ``stamp_ns`` took effect at ``applied_ns``."""
        block, previous = self._block_min_ns, self._previous_min_ns  # offset_ns, inlined
        if block is None:
            offset = 0 if previous is None else previous
        else:
            offset = block if previous is None or block <= previous else previous
        self._latency_ns.append(applied_ns - stamp_ns - offset)
        self.raw_latency_ns.append(applied_ns - stamp_ns)

    def percentiles_ms(
        self, *, raw: bool = False, now_ns: int | None = None
    ) -> tuple[float, float] | None:
        """(p50, p99) of latency in milliseconds, or None before any sample.

        ``raw=True`` skips the clock-offset correction: right when sender and twin share
        one clock (the benchmarks), wrong across machines. With ``now_ns`` (a monotonic
        time), the figures are computed once per :data:`PERCENTILES_EVERY_NS` period (its
        boundaries shifted by ``phase_ns``, so that a hall's robots take turns) and reused
        within it (``twin status`` of 100 robots spent 10 ms of the mirror's loop on them,
        at 30 Hz).
        """
        samples = self.raw_latency_ns if raw else self._latency_ns
        cached = self._percentiles.get(raw)
        if (
            now_ns is not None
            and cached is not None
            and (
                cached[0] == samples.appended
                or (
                    cached[2] is not None  # a cached "none yet" is not kept once samples came
                    and (now_ns + self.phase_ns) // PERCENTILES_EVERY_NS
                    == (cached[1] + self.phase_ns) // PERCENTILES_EVERY_NS
                )
            )
        ):
            return cached[2]
        found = samples.p50_p99()
        result = None if found is None else (found[0] / 1e6, found[1] / 1e6)
        if now_ns is not None:
            self._percentiles[raw] = (samples.appended, now_ns, result)
        return result


@dataclass
class LivenessClock:
    """Liveness of one source from its main stream's nominal period.

    LIVE/LATE/STALE follow the age of the newest message on the main stream (a robot's
    joint states: a robot that only sends heartbeats is not live); any message at all
    keeps a source from GONE.
    """

    period_s: float
    gone_after_s: float = GONE_AFTER_S
    last_rx_ns: int = 0  # newest message on the main stream
    last_any_ns: int = 0  # newest message of any kind
    shutdown: bool = False
    main_messages: int = 0
    judged: Liveness = Liveness.GONE  # what judge() said last
    _main_at_down: int = 0  # main_messages when judge() last said STALE or GONE
    _on_time_since_ns: int | None = None  # while LATE: since when the stream is on time

    def on_message(self, now_ns: int, *, main: bool = True) -> None:
        """A message was accepted now (``main``: on the stream liveness is judged by)."""
        self.last_any_ns = now_ns
        if main:
            self.last_rx_ns = now_ns
            self.main_messages += 1
        self.shutdown = False

    def judge(self, now_ns: int, *, may_worsen: bool = True) -> Liveness:
        """The live twin's liveness, with judgement (``state`` is the bare rule).

        - Slack for the twin's own timing: LATE beyond 1.5 T + LATE_SLACK_S + LATE_HOLD_S,
          STALE beyond 3 T + STALE_SLACK_S (a 200 Hz robot is not STALE 15 ms after its
          last message because the twin's loop was busy, but still within 3 T + 50 ms of it).
        - ``may_worsen=False`` when the caller could not look properly (its loop ran late,
          or messages are still waiting in the socket): the state may only improve.
        - Hysteresis: from LATE back to LIVE only after LATE_CLEAR_S on time; from STALE or
          GONE back to LIVE/LATE only after RECOVER_MESSAGES main-stream messages, so one
          straggler does not flap it.
        - A ``shutdown`` heartbeat is data, not timing: GONE at once.
        """
        previous = self.judged
        if self.shutdown:
            found = Liveness.GONE
        else:
            found = self._rule(now_ns, STALE_SLACK_S, LATE_SLACK_S + LATE_HOLD_S)
            if not may_worsen and _RANK[found] > _RANK[previous]:
                found = previous
            found = self._clear_late(previous, found, now_ns)
            down = previous in (Liveness.STALE, Liveness.GONE)
            if (
                down
                and found in (Liveness.LIVE, Liveness.LATE)
                and self.main_messages - self._main_at_down < RECOVER_MESSAGES
            ):
                found = previous
        if found in (Liveness.STALE, Liveness.GONE) and previous not in (
            Liveness.STALE,
            Liveness.GONE,
        ):
            self._main_at_down = self.main_messages
        self.judged = found
        return found

    def _clear_late(self, previous: Liveness, found: Liveness, now_ns: int) -> Liveness:
        """LATE stays until the stream has been on time for LATE_CLEAR_S."""
        if previous is not Liveness.LATE or found is not Liveness.LIVE:
            self._on_time_since_ns = None
            return found
        if self._on_time_since_ns is None:
            self._on_time_since_ns = now_ns
        if now_ns - self._on_time_since_ns < LATE_CLEAR_S * 1e9:
            return Liveness.LATE
        self._on_time_since_ns = None
        return found

    def _rule(self, now_ns: int, stale_slack_s: float, late_slack_s: float) -> Liveness:
        if self.last_any_ns == 0 or self.shutdown:
            return Liveness.GONE
        if (now_ns - self.last_any_ns) / 1e9 > self.gone_after_s:
            return Liveness.GONE
        if self.last_rx_ns == 0:
            return Liveness.STALE
        age_s = (now_ns - self.last_rx_ns) / 1e9
        if age_s > STALE_PERIODS * self.period_s + stale_slack_s:
            return Liveness.STALE
        if age_s > LATE_PERIODS * self.period_s + late_slack_s:
            return Liveness.LATE
        return Liveness.LIVE

    def state(self, now_ns: int) -> Liveness:
        """The liveness at ``now_ns``."""
        if self.last_any_ns == 0 or self.shutdown:
            return Liveness.GONE
        if (now_ns - self.last_any_ns) / 1e9 > self.gone_after_s:
            return Liveness.GONE
        if self.last_rx_ns == 0:
            return Liveness.STALE
        age_s = (now_ns - self.last_rx_ns) / 1e9
        if age_s > STALE_PERIODS * self.period_s:
            return Liveness.STALE
        if age_s > LATE_PERIODS * self.period_s:
            return Liveness.LATE
        return Liveness.LIVE
