"""The export's recordings beside the session's: one with the raw joint frames too, and its
copy as the recorder wrote it before the joint-state blocks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import record_hall
from tests.dataset.copies import legacy_copy


@pytest.fixture(scope="session")
def raw_fall_recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``twin live --record --raw`` of the default hall emulated for 8 s, T3-04 falling at
    4 s and T3-01 losing its grip (as ``fall_recording``): joint-state blocks, and every
    joint state's vendor frame beside them."""
    path = tmp_path_factory.mktemp("raw_fall") / "raw_fall.mcap"
    return record_hall(path, 8.0, "T3-04:fall@4s", "T3-01:lose_grip@1s", raw=True)


@pytest.fixture(scope="session")
def legacy_fall_recording(
    raw_fall_recording: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """``raw_fall_recording`` as the recorder before the blocks wrote it: a JSON
    ``/joints/<robot>`` message per state beside its raw frame."""
    return legacy_copy(raw_fall_recording, tmp_path_factory.mktemp("legacy") / "legacy_fall.mcap")
