"""A shipment sorted into its robots' blocks: every message once, each robot's in the order
received, and anything else handed back in order."""

from __future__ import annotations

import numpy as np
import pytest

from twin.record.frame_groups import ANY_SIZE, FastRoutes, group_frames


def _routes() -> FastRoutes:
    routes = FastRoutes()
    assert routes.add(b"js/A", 8) == 0  # packed: 8-byte payloads only
    assert routes.add(b"js/B", ANY_SIZE) == 1  # a map: any size
    assert routes.add(b"js/C", 4) == 2
    return routes


def _flat(messages: list[tuple[bytes, bytes]]) -> list[bytes]:
    flat: list[bytes] = []
    for i, (wire_topic, payload) in enumerate(messages):
        flat += [wire_topic, b"h%03d" % i, payload]
    return flat


def _expected(messages: list[tuple[bytes, bytes]], routes: FastRoutes) -> dict[int, list[int]]:
    """Per code, the indexes of its messages, in order (the one-by-one reference)."""
    by_code: dict[int, list[int]] = {}
    for i, (wire_topic, payload) in enumerate(messages):
        code = routes.codes.get(wire_topic, -1)
        size = int(routes.sizes[code])
        if code >= 0 and size in (ANY_SIZE, len(payload)):
            by_code.setdefault(code, []).append(i)
    return by_code


def test_an_empty_shipment() -> None:
    assert group_frames([], _routes()) == ([], [])


def test_one_robot_keeps_its_order_without_sorting() -> None:
    messages = [(b"js/A", bytes([i]) * 8) for i in range(5)]
    slow, groups = group_frames(_flat(messages), _routes())
    assert slow == []
    assert groups == [(0, tuple(b"h%03d" % i for i in range(5)), tuple(p for _, p in messages))]


@pytest.mark.parametrize("seed", range(6))
def test_interleaved_robots_wrong_sizes_and_other_topics(seed: int) -> None:
    rng = np.random.default_rng(seed)
    kinds = [
        (b"js/A", 8), (b"js/A", 9), (b"js/B", 3), (b"js/B", 30), (b"js/C", 4),
        (b"base/A", 8), (b"js/unknown", 8),
    ]  # fmt: skip
    count = int(rng.integers(1, 300))
    picks = rng.integers(0, len(kinds), count)
    messages = [(kinds[k][0], bytes([i % 251]) * kinds[k][1]) for i, k in enumerate(picks)]
    routes = _routes()
    flat = _flat(messages)
    slow, groups = group_frames(flat, routes)
    expected = _expected(messages, routes)
    assert slow == sorted(set(range(count)) - {i for v in expected.values() for i in v})
    assert [code for code, _, _ in groups] == sorted(expected)  # each robot once
    for code, headers, payloads in groups:
        order = expected[code]
        assert headers == tuple(flat[3 * i + 1] for i in order)
        assert payloads == tuple(flat[3 * i + 2] for i in order)


def test_only_messages_no_route_takes() -> None:
    messages = [(b"base/A", b"x"), (b"js/A", b"short")]
    assert group_frames(_flat(messages), _routes()) == ([0, 1], [])


def test_a_topic_has_one_code() -> None:
    routes = _routes()
    with pytest.raises(ValueError, match="has a fast route already"):
        routes.add(b"js/A", 8)
