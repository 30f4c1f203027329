"""Hostile input files are refused before they cost memory: size, YAML bombs, deep nesting."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from hallfiles.limits import ENV_MAX_INPUT_BYTES, MAX_YAML_DEPTH
from scenes import DEFAULT_SCENE, SceneError, load_scene
from scenes.tasks import TaskError, load_task


def bomb() -> str:
    """A billion-laughs document: 10 aliases a level, 9 levels (10^10 nodes expanded)."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    previous = "a"
    for level in range(1, 10):
        name = f"l{level}"
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]")
        previous = name
    return "\n".join(lines) + "\n"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def test_a_yaml_bomb_is_one_problem_in_well_under_a_second(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(), encoding="utf-8")
    before = peak_rss_mb()
    started = time.perf_counter()
    with pytest.raises(SceneError) as caught:
        load_scene(path)
    with pytest.raises(TaskError) as task_caught:
        load_task(path, load_scene())
    assert time.perf_counter() - started < 5.0  # generous for a loaded CI; here ~0.05 s
    assert peak_rss_mb() - before < 200.0
    for problems in (caught.value.problems, task_caught.value.problems):
        (problem,) = problems
        assert str(problem).startswith(f"{path}: YAML expands to over 200,000 nodes")


def test_a_50_mb_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w", encoding="utf-8") as handle:
        handle.write("name: huge\nfiller: [")
        handle.write("1, " * 17_000_000)
        handle.write("1]\n")
    assert path.stat().st_size > 50_000_000
    before = peak_rss_mb()
    with pytest.raises(SceneError) as caught:
        load_scene(path)
    assert peak_rss_mb() - before < 200.0
    (problem,) = caught.value.problems
    assert "over the 1.0 MiB limit for input files" in str(problem)
    assert ENV_MAX_INPUT_BYTES in str(problem)


def test_the_size_limit_can_be_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hall = DEFAULT_SCENE.read_text(encoding="utf-8")
    path = tmp_path / "hall.yaml"
    path.write_text(hall + "#" * 2_000_000 + "\n", encoding="utf-8")
    with pytest.raises(SceneError, match="limit for input files"):
        load_scene(path)
    monkeypatch.setenv(ENV_MAX_INPUT_BYTES, str(8 << 20))
    assert load_scene(path).robots  # the same file loads under the raised limit


def test_nesting_beyond_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    depth = MAX_YAML_DEPTH + 5
    path.write_text("name: " + "[" * depth + "]" * depth + "\n", encoding="utf-8")
    with pytest.raises(SceneError) as caught:
        load_scene(path)
    (problem,) = caught.value.problems
    assert f"nested more than {MAX_YAML_DEPTH} levels deep" in str(problem)


def test_the_default_hall_is_well_within_the_limits() -> None:
    assert load_scene().robots
