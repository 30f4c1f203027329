"""The twin's side of sharded ingest: workers' digests into the twin's links and totals.

Each digest (:mod:`twin.live.shard_digest`) brings, per stream, the runs of messages a
worker accepted. :class:`DigestMerger` replays them through the twin's own
:class:`~sync.streams.StreamTracker` of each stream, so the one-process rules judge them
once, across workers: the first run of a stream is a baseline (``joined_mid_epoch`` if it
starts past seq 0), a jump is a gap, a new epoch takes over (an ``epoch`` event, the old one
retired), and a retired epoch's run (a second sender on another worker's connection, or an
old connection's backlog) is refused as ``stale_epoch`` and counted as
``epochs_interleaved`` with one ``takeover`` event, exactly as if one process had seen the
frames. A state (joint state, heartbeat, base pose, crane state) is applied only when it is
the newest the twin has of its stream.

What a worker refused itself comes as counts by reason; what the twin refuses here is moved
from the accepted totals to the refused ones, so per-robot rows still add up to the totals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sync.monitor import SocketMonitor
from sync.protocol import Header, Kind, Received, topic
from sync.streams import SeqVerdict, StreamTracker
from twin.live.ingest import Ingest
from twin.live.links import CraneLink, RobotLink
from twin.live.shard_digest import CraneDigest, Digest, RobotDigest, StreamDigest, joint_values

log = logging.getLogger(__name__)

Sink = Callable[[Received], None]
_Topics = tuple[set[bytes], set[bytes]]  # (topics with a refused run, with an accepted run)


def replay(tracker: StreamTracker, epoch: int, first: int, last: int, count: int) -> int:
    """One run of accepted messages through the twin's tracker of its stream, as if each
    had come one by one; returns how many the twin accepts (0 for a retired epoch's run,
    fewer than ``count`` where the run overlaps what another worker brought)."""
    verdict = tracker.observe(epoch, first)
    if verdict is SeqVerdict.STALE_EPOCH:
        tracker.stale_epoch += count - 1
        return 0
    if verdict is SeqVerdict.STALE_SEQ:
        tracker.stale -= 1  # judged here, as a whole
        newer = max(0, min(count, last - tracker.last_seq))
        tracker.stale += count - newer
        if newer:
            tracker.received += newer
            tracker.last_seq = last
        return newer
    if count > 1:  # the first was accounted for by observe()
        tracker.received += count - 1
        tracker.gaps += max(0, last - first + 1 - count)
        tracker.last_seq = last
    return count


class DigestMerger:
    """Applies digests to the twin's links; keeps nothing but what the links hold."""

    def __init__(
        self,
        robots: dict[str, RobotLink],
        cranes: dict[str, CraneLink],
        ingest: Ingest,
        monitor: SocketMonitor,
    ) -> None:
        self.robots = robots
        self.cranes = cranes
        self.ingest = ingest
        self.monitor = monitor
        self.events_dropped = 0

    def apply(
        self, digest: Digest, mono_ns: int, sinks: list[Sink]
    ) -> tuple[list[RobotLink], set[bytes]]:
        """One digest: (robots with a new joint state to apply, topics the twin refused every
        run of: their frames are not for the recorder)."""
        ingest = self.ingest
        ingest.received += digest.received
        ingest.accepted += digest.accepted
        ingest.unattributed += digest.unattributed
        ingest.bytes_in += digest.bytes_in
        ingest.log_suppressed += digest.log_suppressed
        ingest.bad_frames.update(digest.bad_frames)
        ingest.unknown_sources.update(digest.unknown_sources)
        self.monitor.counts.update(digest.connections)
        self.events_dropped += digest.events_dropped
        for kind, source, detail in digest.events:  # takeovers inside one worker
            ingest.on_event(kind, source, detail)
        touched: list[RobotLink] = []
        refused: set[bytes] = set()
        taken: set[bytes] = set()
        for found in digest.robots:
            link = self.robots.get(found.robot_id)
            if link is not None and self._robot(link, found, mono_ns, sinks, (refused, taken)):
                touched.append(link)
        for crane_found in digest.cranes:
            crane = self.cranes.get(crane_found.crane_id)
            if crane is not None:
                self._crane(crane, crane_found, mono_ns, (refused, taken))
        return touched, refused - taken

    def _refuse(self, source: RobotLink | CraneLink, reason: str, count: int) -> None:
        """Messages a worker accepted that the twin refuses: moved to the refused counts."""
        self.ingest.accepted -= count
        self.ingest.bad_frames[reason] += count
        source.refused[reason] += count

    def _streams(
        self, link: RobotLink, streams: list[StreamDigest], topics: _Topics
    ) -> tuple[int, bool]:
        """Replay a robot's runs; (joint states the twin accepts, whether any run was)."""
        main = 0
        any_accepted = False
        for stream in streams:
            kind = Kind(stream.kind)
            tracker = link.tracker(kind)
            tracker.stale += stream.stale
            tracker.stale_epoch += stream.stale_epoch
            for epoch, first, last, count in stream.runs:
                previous = (tracker.epoch, tracker.epoch_changes, tracker.resyncs)
                taken = replay(tracker, epoch, first, last, count)
                if taken < count:
                    stale_epoch = taken == 0 and tracker.epoch != epoch
                    self._refuse(link, "stale_epoch" if stale_epoch else "stale_seq",
                                 count - taken)  # fmt: skip
                    topics[0].add(topic(kind, link.robot_id))
                    if stale_epoch:
                        self._interleaved(link, kind, epoch, count)
                if not taken:
                    continue
                topics[1].add(topic(kind, link.robot_id))
                any_accepted = True
                if kind == Kind.JOINT_STATE:
                    main += taken
                if tracker.resyncs != previous[2]:
                    self.ingest.on_event("resync", link.robot_id,
                                         f"{kind.prefix} seq jumped to {first}")  # fmt: skip
                if tracker.epoch_changes != previous[1] and epoch != link.epoch:
                    self.ingest.on_event("epoch", link.robot_id,
                                         f"gateway restarted: new epoch {epoch:#x}")  # fmt: skip
                    link.delay.reset()
                link.epoch = epoch
        return main, any_accepted

    def _interleaved(self, link: RobotLink, kind: Kind, epoch: int, count: int) -> None:
        link.epochs_interleaved += count
        if link.interleave_told != link.epoch:
            link.interleave_told = link.epoch
            self.ingest.on_event(
                "takeover",
                link.robot_id,
                f"{kind.prefix}: epoch {epoch:#x} still sends after {link.epoch:#x} took over "
                "(two senders, or an old connection's backlog)",
            )

    def _robot(
        self,
        link: RobotLink,
        found: RobotDigest,
        mono_ns: int,
        sinks: list[Sink],
        topics: _Topics,
    ) -> bool:
        """One robot's part of a digest; True if it brought a joint state to apply."""
        link.frames_in += found.frames_in
        if found.refused:
            link.refused.update(found.refused)
        link.epochs_interleaved += found.epochs_interleaved
        joints_taken, any_accepted = self._streams(link, found.streams, topics)
        link.joint_messages += joints_taken
        if found.rate_msgs:
            link.rate_in.add_many(mono_ns, found.rate_msgs, found.bytes_in)
        liveness = link.liveness
        if joints_taken:
            liveness.main_messages += joints_taken
            liveness.last_rx_ns = max(liveness.last_rx_ns, found.last_rx_ns)
        if any_accepted:
            liveness.last_any_ns = max(liveness.last_any_ns, found.last_any_ns)
            liveness.shutdown = found.shutdown
        link.view_dirty = True
        if found.heartbeat is not None and _newest(
            link.streams.get(Kind.HEARTBEAT), found.heartbeat_epoch, found.heartbeat_seq
        ):
            link.heartbeat = found.heartbeat
            if sinks:
                header = Header(Kind.HEARTBEAT, found.heartbeat_seq, 0, found.heartbeat_epoch)
                record = Received(found.last_any_ns, link.robot_id, header,
                                  topic(Kind.HEARTBEAT, link.robot_id), b"", None)  # fmt: skip
                for sink in sinks:
                    sink(record)
        if found.base is not None and _newest(
            link.streams.get(Kind.BASE), found.base_epoch, found.base_seq
        ):
            link.base = found.base
            link.base_dirty = True
        if found.joints is None or not _newest(
            link.streams.get(Kind.JOINT_STATE), found.joints_epoch, found.joints_seq
        ):
            return False
        values = joint_values(found)
        if values is None:
            link.raw_payload, link.raw_joints = found.joints, None
        else:
            link.raw_payload, link.raw_joints = None, values
        link.joints_stamp_ns = found.joints_stamp_ns
        link.joints_dirty = True
        link.delay.on_receive(found.joints_stamp_ns, found.joints_received_ns)
        if sinks:
            header = Header(Kind.JOINT_STATE, found.joints_seq, found.joints_stamp_ns,
                            found.joints_epoch)  # fmt: skip
            payload = found.joints if values is None else b""
            record = Received(found.joints_received_ns, link.robot_id, header,
                              topic(Kind.JOINT_STATE, link.robot_id), payload,
                              link.wire_joints())  # fmt: skip
            for sink in sinks:
                sink(record)
        return True

    def _crane(self, crane: CraneLink, found: CraneDigest, mono_ns: int, topics: _Topics) -> None:
        crane.frames_in += found.frames_in
        if found.refused:
            crane.refused.update(found.refused)
        tracker = crane.stream
        tracker.stale += found.stream.stale
        tracker.stale_epoch += found.stream.stale_epoch
        any_accepted = False
        for epoch, first, last, count in found.stream.runs:
            taken = replay(tracker, epoch, first, last, count)
            if taken < count:
                self._refuse(crane, "stale_epoch" if taken == 0 and tracker.epoch != epoch
                             else "stale_seq", count - taken)  # fmt: skip
                topics[0].add(topic(Kind.CRANE, crane.crane_id))
            if taken:
                topics[1].add(topic(Kind.CRANE, crane.crane_id))
                any_accepted = True
        if found.rate_msgs:
            crane.rate_in.add_many(mono_ns, found.rate_msgs, found.bytes_in)
        if any_accepted:
            crane.liveness.last_rx_ns = max(crane.liveness.last_rx_ns, found.last_rx_ns)
            crane.liveness.last_any_ns = crane.liveness.last_rx_ns
        if found.state is not None and _newest(tracker, found.epoch, found.seq):
            crane.state = found.state
            crane.stamp_ns = found.stamp_ns
            crane.dirty = True
        crane.view_dirty = True


def _newest(tracker: StreamTracker | None, epoch: int, seq: int) -> bool:
    """Whether (epoch, seq) is the newest message the twin accepted of this stream."""
    return tracker is not None and tracker.epoch == epoch and tracker.last_seq == seq
