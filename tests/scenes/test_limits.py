"""Hostile input files are refused before they cost memory: size, YAML bombs, deep nesting.

In process (the parse itself, timed), and through the real CLI in child processes (exit
status, what is said, the child's own peak memory from ``wait4``).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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


PARSE_BOUND_S = 1.0
"""The most one refusal may take in process. Measured on the project's 2-core machine at a
load average of 11: a bomb 2-3 ms (180 ms once, the first call), a 50 MB file 0.1-6 ms; the
bound leaves 5 times the worst of those for a busier machine."""
MB = 1_000_000
CHILD_PEAK_BOUND_MB = 200.0
"""The issue's bound on memory, for the whole ``twin`` process (interpreter and imports
included: about 154 MB here, most of it the imports any ``twin scene check`` makes)."""
HOSTILE_EXTRA_BOUND_MB = 30.0
"""What a hostile file may add to the peak of the same command on the default hall."""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A YAML bomb (as a scene and as a task: the same file), and 50 MB scene and task files
    whose first lines look right."""
    where = tmp_path_factory.mktemp("hostile")
    paths = {"bomb": where / "bomb.yaml"}
    paths["bomb"].write_text(bomb(), encoding="utf-8")
    for name, head in (
        ("scene", "name: huge\nfiller: ["),
        ("task", "name: huge\nrobot: T3-02\nsteps: ["),
    ):
        path = paths[name] = where / f"huge_{name}.yaml"
        with path.open("w", encoding="utf-8") as handle:
            handle.write(head)
            handle.write("1, " * 17_000_000)
            handle.write("1]\n")
        assert path.stat().st_size > 50 * MB
    return paths


def test_a_yaml_bomb_is_one_problem_in_well_under_a_second(hostile: dict[str, Path]) -> None:
    path = hostile["bomb"]
    scene = load_scene()
    before = peak_rss_mb()
    with pytest.raises(SceneError) as caught:
        load_scene(path)
    with pytest.raises(TaskError) as task_caught:
        load_task(path, scene)
    assert peak_rss_mb() - before < 200.0
    for problems in (caught.value.problems, task_caught.value.problems):
        (problem,) = problems
        assert str(problem).startswith(f"{path}: YAML expands to over 200,000 nodes")


def test_each_refusal_takes_well_under_a_second(hostile: dict[str, Path]) -> None:
    scene = load_scene()

    def refused(call: Callable[[], object], error: type[Exception]) -> float:
        started = time.perf_counter()
        with pytest.raises(error):
            call()
        return time.perf_counter() - started

    took = {
        "bomb as a scene": refused(lambda: load_scene(hostile["bomb"]), SceneError),
        "bomb as a task": refused(lambda: load_task(hostile["bomb"], scene), TaskError),
        "50 MB scene": refused(lambda: load_scene(hostile["scene"]), SceneError),
        "50 MB task": refused(lambda: load_task(hostile["task"], scene), TaskError),
    }
    assert max(took.values()) < PARSE_BOUND_S, took


def test_a_50_mb_file_is_refused_unread(hostile: dict[str, Path]) -> None:
    scene = load_scene()
    before = peak_rss_mb()
    with pytest.raises(SceneError) as caught:
        load_scene(hostile["scene"])
    with pytest.raises(TaskError) as task_caught:
        load_task(hostile["task"], scene)
    assert peak_rss_mb() - before < 200.0
    for problems in (caught.value.problems, task_caught.value.problems):
        (problem,) = problems
        assert "over the 1.0 MiB limit for input files" in str(problem)
        assert ENV_MAX_INPUT_BYTES in str(problem)


@dataclass(frozen=True)
class Run:
    """A finished ``twin`` child: exit status, what it said, its own peak memory."""

    code: int
    stdout: str
    stderr: str
    peak_mb: float


_PEAK_WRAPPER = """
import atexit, runpy, sys
peak_path = sys.argv[1]
def _peak():
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    with open(peak_path, "w") as out:
        out.write(str(kib))
atexit.register(_peak)
sys.argv = ["twin", *sys.argv[2:]]
runpy.run_module("twin", run_name="__main__", alter_sys=True)
"""


def run_twin(*args: str, where: Path, timeout_s: float = 120.0) -> Run:
    """``python -m twin ARGS``, with its peak resident memory as the kernel counts it for the
    command's own address space (VmHWM, read as it exits). Not ``wait4``'s ru_maxrss: a
    child forked from this test process starts with the test process's pages, so in a long
    suite its ru_maxrss is the test process's size (1.5 GB), not the command's."""
    out, err, peak = where / "stdout", where / "stderr", where / "peak_kib"
    peak.unlink(missing_ok=True)
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_WRAPPER, str(peak), *args],
        capture_output=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    out.write_bytes(result.stdout)
    err.write_bytes(result.stderr)
    return Run(
        result.returncode,
        result.stdout.decode("utf-8"),
        result.stderr.decode("utf-8"),
        int(peak.read_text()) * 1024 / MB,
    )


def test_the_cli_refuses_hostile_files_in_one_line_exit_2_and_bounded_memory(
    hostile: dict[str, Path], tmp_path: Path
) -> None:
    bomb_problem = (
        f"{hostile['bomb']}: YAML expands to over 200,000 nodes (aliases counted in full); "
        "a hall or task needs far fewer"
    )

    def too_large(path: Path) -> str:
        size = path.stat().st_size / (1 << 20)
        return (
            f"{path}: file is {size:.1f} MiB, over the 1.0 MiB limit for input files "
            f"(raise it with `twin --max-input-bytes N` or {ENV_MAX_INPUT_BYTES})"
        )

    cases = {
        ("scene", "check", str(hostile["bomb"])): [bomb_problem, "1 problem; scene not loaded"],
        ("preview", str(hostile["bomb"])): [bomb_problem, "1 problem; task not previewed"],
        ("scene", "check", str(hostile["scene"])): [
            too_large(hostile["scene"]),
            "1 problem; scene not loaded",
        ],
        ("preview", str(hostile["task"])): [
            too_large(hostile["task"]),
            "1 problem; task not previewed",
        ],
        ("dispatch", str(hostile["task"]), "--robot", "T3-02"): [
            f"twin dispatch: {too_large(hostile['task'])}"
        ],
    }
    baseline = run_twin("scene", "check", str(DEFAULT_SCENE), where=tmp_path)
    assert baseline.code == 0, baseline.stderr
    for args, said in cases.items():
        run = run_twin(*args, where=tmp_path)
        assert (run.code, run.stdout, run.stderr.splitlines()) == (2, "", said), args
        assert run.peak_mb < CHILD_PEAK_BOUND_MB, (args, run.peak_mb)
        assert run.peak_mb < baseline.peak_mb + HOSTILE_EXTRA_BOUND_MB, (
            args,
            run.peak_mb,
            baseline.peak_mb,
        )


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


def test_the_max_input_bytes_option_sets_the_limit(
    hostile: dict[str, Path], tmp_path: Path
) -> None:
    """``twin --max-input-bytes N``: in ``twin --help``; raises the limit (a 3 MB hall loads),
    lowers it (the default hall is refused), and wins over the environment variable."""
    shown = subprocess.run(
        [sys.executable, "-m", "twin", "--help"],
        capture_output=True, text=True, timeout=120, check=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert "--max-input-bytes" in shown.stdout
    assert ENV_MAX_INPUT_BYTES in shown.stdout
    big = tmp_path / "big_hall.yaml"
    big.write_text(DEFAULT_SCENE.read_text(encoding="utf-8") + "#" * 3_000_000 + "\n")
    refused = run_twin("scene", "check", str(big), where=tmp_path)
    assert refused.code == 2 and "over the 1.0 MiB limit" in refused.stderr, refused.stderr
    raised = run_twin("--max-input-bytes", str(8 << 20), "scene", "check", str(big), where=tmp_path)
    assert raised.code == 0, raised.stderr
    env = {**os.environ, ENV_MAX_INPUT_BYTES: str(8 << 20)}
    lowered = subprocess.run(
        [sys.executable, "-m", "twin", "--max-input-bytes", "100", "scene", "check",
         str(DEFAULT_SCENE)],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    size = DEFAULT_SCENE.stat().st_size / 1024
    assert (lowered.returncode, lowered.stderr.splitlines()) == (
        2,
        [
            f"{DEFAULT_SCENE}: file is {size:.1f} kB, over the 100 bytes limit for input "
            f"files (raise it with `twin --max-input-bytes N` or {ENV_MAX_INPUT_BYTES})",
            "1 problem; scene not loaded",
        ],
    )
    zero = subprocess.run(
        [sys.executable, "-m", "twin", "--max-input-bytes", "0", "scene", "check"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert zero.returncode == 2 and "Traceback" not in zero.stderr
