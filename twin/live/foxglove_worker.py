"""The live Foxglove server's own process: newest states in from the twin, the hall served.

Started by :class:`twin.live.foxglove_feed.FoxgloveFeed` as ``python -m
twin.live.foxglove_worker ENDPOINT PARENT_PID``: it lowers its priority (:data:`NICE`),
connects to the twin's PAIR channel, takes the start-up parameters (scene, models, host,
port, display rate), builds a kinematic world of the scene
(:class:`~twin.record.foxglove_hall.FoxgloveHall`, the recorder's) and starts
foxglove-sdk's WebSocket server with the recorder's two channels and schemas, read-only (no
capabilities); then says ``ready`` with the bound port (or ``failed`` and why, in one line).

Until told to stop (or the twin is gone), it takes every shipment waiting (each topic's
newest payload: joint states, base poses, crane positions), keeps the newest of each,
decodes them, poses the world and logs one ``foxglove.FrameTransforms`` on ``/foxglove/tf``
stamped with the twin's time of the shipment. The whole ``foxglove.SceneUpdate`` goes out on
``/foxglove/scene`` when a client subscribes to it (the protocol keeps no last message), and
the transforms again when a client subscribes to them, so a client that connects to a hall
standing still still sees it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import marshal
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Final

import zmq
from foxglove.websocket import ChannelView, Client, ServerListener

from sync.worker import connect, orphaned
from twin.live.foxglove_feed import FAILED, INIT, READY, STATES, STOP

log = logging.getLogger(__name__)

NICE: Final = 10
"""The worker's nice increment: the twin's ingest preempts it."""
POLL_MS: Final = 100
INIT_TIMEOUT_MS: Final = 30_000
SERVER_NAME: Final = "hall twin"


class _Subscriptions(ServerListener):
    """A foxglove-sdk server listener: which channels a client just subscribed to."""

    def __init__(self, scene_topic: str, tf_topic: str) -> None:
        self.scene_due = threading.Event()
        self.tf_due = threading.Event()
        self._scene_topic = scene_topic
        self._tf_topic = tf_topic

    def on_subscribe(self, client: Client, channel: ChannelView) -> None:
        """A client subscribed (called on the SDK's thread)."""
        if channel.topic == self._scene_topic:
            self.scene_due.set()
        elif channel.topic == self._tf_topic:
            self.tf_due.set()


class _Server:
    """The kinematic world, the decoders and the SDK's server and channels."""

    def __init__(self, init: dict[str, Any]) -> None:
        import foxglove
        from foxglove.messages import FrameTransforms, JointStates, Log, SceneUpdate

        from robots import get_model
        from robots.library import add_model_dirs
        from sync.codecs import codec_for
        from twin.record.foxglove_channels import (
            ENCODING,
            JOINTS_TOPIC,
            LOG_TOPIC,
            SCENE_TOPIC,
            TF_TOPIC,
        )
        from twin.record.foxglove_hall import FoxgloveHall
        from twin.world.world import World

        add_model_dirs([Path(p) for p in init["model_roots"].values()], "the twin's models")
        scene = init["scene"]
        self.codecs = {robot.id: codec_for(get_model(robot.model)) for robot in scene.robots}
        self.world = World(scene)
        try:
            self.hall = FoxgloveHall(self.world)
        except BaseException:
            self.world.close()
            raise
        self.context = foxglove.Context()
        self.channels = {}
        self.joints_topic, self.log_topic = JOINTS_TOPIC, LOG_TOPIC
        topics: list[tuple[str, Any]] = [
            (SCENE_TOPIC, SceneUpdate),
            (TF_TOPIC, FrameTransforms),
            (LOG_TOPIC, Log),
        ]
        topics += [(JOINTS_TOPIC + robot.id, JointStates) for robot in scene.robots]
        for topic, schema in topics:
            described = schema.get_schema()
            self.channels[topic] = foxglove.Channel(
                topic,
                schema=foxglove.Schema(
                    name=described.name, encoding=described.encoding, data=described.data
                ),
                message_encoding=ENCODING,
                context=self.context,
            )
        self.scene_topic, self.tf_topic = SCENE_TOPIC, TF_TOPIC
        self.subscriptions = _Subscriptions(SCENE_TOPIC, TF_TOPIC)
        host, port = str(init["host"]), int(init["port"])
        try:
            self.server = foxglove.start_server(
                name=SERVER_NAME,
                host=host,
                port=port,
                capabilities=[],  # read-only: no publish, services, parameters
                server_listener=self.subscriptions,
                context=self.context,
                message_backlog_size=int(init["backlog_messages"]),
            )
        except RuntimeError as exc:
            self.world.close()
            why = str(exc).removeprefix("FoxgloveError: ")
            raise ServeError(f"cannot serve Foxglove on {host}:{port}: {why}") from None
        self.host = host
        self.last_stamp_ns = time.time_ns()

    def take(self, newest: dict[bytes, bytes], stamp_ns: int) -> None:
        """Pose the world from each topic's newest payload (a bad one is skipped), and
        publish each robot's joint state, stamped ``stamp_ns``."""
        from sync.protocol import BaseState, CraneState, Kind, decode_payload, parse_topic
        from twin.record.foxglove_channels import joint_states_message

        hall = self.hall
        for topic, payload in newest.items():
            try:
                kind, source = parse_topic(topic)
                if kind == Kind.JOINT_STATE:
                    codec = self.codecs.get(source)
                    if codec is not None:
                        sample = codec.to_sample(codec.check(payload))
                        position = sample.positions.tolist()
                        hall.set_joints(source, position)
                        data = joint_states_message(
                            stamp_ns,
                            codec.canonical_names,
                            position,
                            sample.velocities.tolist(),
                            sample.efforts.tolist(),
                        )
                        self.channels[self.joints_topic + source].log(data, log_time=stamp_ns)
                elif kind in (Kind.BASE, Kind.CRANE):
                    decoded = decode_payload(kind, payload)
                    if isinstance(decoded, BaseState):
                        hall.set_base(source, decoded.position_m, decoded.orientation_xyzw)
                    elif isinstance(decoded, CraneState):
                        hall.set_crane(source, decoded.bridge_m, decoded.trolley_m, decoded.hoist_m)
            except Exception as exc:  # ingest checked it; never let one message stop the view
                log.debug("foxglove: %r skipped: %r", topic, exc)

    def publish_logs(self, events: list[tuple[int, str, str, str]]) -> None:
        """The mirror's events as log lines."""
        from twin.record.foxglove_channels import log_message

        channel = self.channels[self.log_topic]
        for stamp_ns, kind, source, detail in events:
            channel.log(log_message(stamp_ns, kind, source, detail), log_time=stamp_ns)

    def publish_tf(self, stamp_ns: int) -> None:
        self.last_stamp_ns = stamp_ns
        data = self.hall.transforms(stamp_ns)
        self.channels[self.tf_topic].log(data, log_time=stamp_ns)

    def publish_scene(self) -> None:
        stamp_ns = time.time_ns()
        data = self.hall.scene_update(stamp_ns)
        self.channels[self.scene_topic].log(data, log_time=stamp_ns)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.server.stop()
        self.world.close()


class ServeError(RuntimeError):
    """The server cannot be started (one line)."""


def serve(channel: zmq.Socket[bytes], server: _Server, parent_pid: int) -> None:
    """Until told to stop or the twin is gone: shipments in, transforms out."""
    subscriptions = server.subscriptions
    while not orphaned(parent_pid):
        newest: dict[bytes, bytes] = {}
        events: list[tuple[int, str, str, str]] = []
        stamp_ns = 0
        stop = False
        if channel.poll(POLL_MS, zmq.POLLIN):
            while True:  # every shipment waiting; the newest state of each topic wins
                try:
                    tag, body = channel.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if tag == STOP:
                    stop = True
                    break
                if tag == STATES:
                    stamp_ns, states, told = marshal.loads(body)
                    newest.update(states)
                    events += told
        if stop:
            return
        if subscriptions.scene_due.is_set():
            subscriptions.scene_due.clear()
            server.publish_scene()
        if events:
            server.publish_logs(events)
        if newest:
            subscriptions.tf_due.clear()
            server.take(newest, stamp_ns)
            server.publish_tf(stamp_ns)
        elif subscriptions.tf_due.is_set():
            subscriptions.tf_due.clear()
            server.publish_tf(time.time_ns())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="twin.live.foxglove_worker")
    parser.add_argument("endpoint")
    parser.add_argument("parent_pid", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the twin decides when to stop
    with contextlib.suppress(OSError):
        os.nice(NICE)
    context, channel = connect(args.endpoint, linger_ms=1000)
    server: _Server | None = None
    try:
        if not channel.poll(INIT_TIMEOUT_MS, zmq.POLLIN):
            return 1
        tag, body = channel.recv_multipart()
        if tag != INIT:
            return 1
        init = pickle.loads(body)
        try:
            server = _Server(init)
        except ServeError as exc:
            channel.send_multipart((FAILED, str(exc).encode()))
            return 2
        except Exception as exc:
            channel.send_multipart((FAILED, f"cannot start the Foxglove server: {exc}".encode()))
            return 1
        ready = {"host": server.host, "port": server.server.port}
        channel.send_multipart((READY, json.dumps(ready).encode()))
        serve(channel, server, args.parent_pid)
        return 0
    finally:
        if server is not None:
            server.close()
        channel.close(linger=1000)
        context.term()


if __name__ == "__main__":
    sys.exit(main())
