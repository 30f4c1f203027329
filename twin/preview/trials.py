"""Robustness trials: rerun a preview under perturbed reality, count successes.

Trial ``i`` of a run with seed ``S`` uses :meth:`Variation.trial` with its own seed derived from
``(S, i)``, so a trial's outcome depends only on the task, the scene, ``S`` and ``i``: serial,
parallel (local processes) and Ray runs give the same per-trial outcomes. The success rate comes
with a 95 % Wilson score interval.

Lessons' reproducible conditions are among the variations: with ``L`` conditions (the
preview's form of each lesson that concerns the task), trial ``i`` also runs under condition
``i mod (L + 1) - 1`` (none when that is -1), on top of its own random spread. Which trial gets
which condition depends only on ``i``, so the runners still agree.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Final

from scenes.model import Scene
from scenes.tasks import Task
from twin.preview.compile import CompiledTask, compile_task
from twin.preview.engine import Variation, run_preview
from twin.preview.surroundings import Surroundings

log = logging.getLogger(__name__)

Z_95: Final = 1.959963984540054


class TrialsInputError(ValueError):
    """A trials request that cannot run (the message says why, in one line)."""


@dataclass(frozen=True)
class TrialOutcome:
    """One trial: its index and seed, whether it passed, and its failure kinds."""

    index: int
    seed: int
    passed: bool
    kinds: tuple[str, ...]
    cycle_time_s: float
    simulated_s: float
    lesson: str | None = None
    """The lesson whose condition the trial also ran under, if any."""

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "index": self.index,
            "seed": self.seed,
            "passed": self.passed,
            "kinds": list(self.kinds),
            "cycle_time_s": round(self.cycle_time_s, 4),
            "lesson": self.lesson,
        }


Conditions = Sequence[dict[str, Any]]
"""Lessons' conditions as :class:`Variation` fields (``twin.lessons.concern.variation_fields``)."""


def trial_variation(seed: int, index: int, conditions: Conditions = ()) -> Variation:
    """The variation of trial ``index``: its random spread, and the lesson condition it takes
    (see the module docstring)."""
    variation = Variation.trial(trial_seed(seed, index))
    which = index % (len(conditions) + 1) - 1
    if which < 0:
        return variation
    return dataclasses.replace(variation, **conditions[which])


def trial_seed(seed: int, index: int) -> int:
    """The seed of trial ``index`` of a run seeded ``seed``."""
    return zlib.crc32(f"{seed}:{index}".encode())


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95 % by default)."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def run_one(
    task: Task,
    scene: Scene,
    seed: int,
    index: int,
    compiled: CompiledTask | None = None,
    surroundings: Surroundings | None = None,
    conditions: Conditions = (),
    own_feet: bool = False,
) -> TrialOutcome:
    """Run trial ``index`` (in this process)."""
    variation = trial_variation(seed, index, conditions)
    result = run_preview(
        task, scene, variation=variation, compiled=compiled, keep_series=False,
        surroundings=surroundings, own_feet=own_feet,
    )  # fmt: skip
    kinds = tuple(sorted({r.kind for r in result.reasons}))
    return TrialOutcome(
        index, variation.seed, result.passed, kinds, result.cycle_time_s, result.simulated_s,
        variation.lesson,
    )  # fmt: skip


_WORKER: dict[str, Any] = {}


def _init_worker(
    task: Task,
    scene: Scene,
    surroundings: Surroundings | None,
    conditions: Conditions,
    own_feet: bool = False,
) -> None:
    _WORKER["task"], _WORKER["scene"], _WORKER["surroundings"] = task, scene, surroundings
    _WORKER["compiled"] = compile_task(task, scene, own_feet=own_feet)
    _WORKER["conditions"] = conditions


def _worker(seed: int, index: int) -> TrialOutcome:
    w = _WORKER
    return run_one(
        w["task"], w["scene"], seed, index, w["compiled"], w["surroundings"], w["conditions"]
    )


def run_trials(
    task: Task,
    scene: Scene,
    trials: int,
    *,
    seed: int = 0,
    jobs: int | None = None,
    ray_address: str | None = None,
    on_done: Callable[[TrialOutcome], None] | None = None,
    surroundings: Surroundings | None = None,
    conditions: Conditions = (),
    own_feet: bool = False,
) -> list[TrialOutcome]:
    """Run ``trials`` trials; ``jobs`` local processes (default: every core), or on Ray;
    ``conditions``: lessons' conditions, spread over the trials (see the module docstring);
    ``own_feet``: the robot on its own feet outside walks (``twin preview``'s default;
    False: ``--carried``).

    Outcomes come back sorted by index. ``on_done`` is called as each finishes (progress).
    """
    if trials < 1:
        raise TrialsInputError(f"--trials {trials}: must be at least 1")
    if ray_address is not None:
        outcomes = list(
            _ray_trials(
                task,
                scene,
                trials,
                seed,
                ray_address,
                on_done,
                surroundings,
                conditions,
                own_feet,
            )
        )
    else:
        outcomes = list(
            _local_trials(
                task, scene, trials, seed, jobs, on_done, surroundings, conditions, own_feet
            )
        )
    return sorted(outcomes, key=lambda o: o.index)


def _local_trials(
    task: Task,
    scene: Scene,
    trials: int,
    seed: int,
    jobs: int | None,
    on_done: Callable[[TrialOutcome], None] | None,
    surroundings: Surroundings | None,
    conditions: Conditions,
    own_feet: bool = False,
) -> Iterator[TrialOutcome]:
    workers = max(1, min(trials, jobs or os.cpu_count() or 1))
    if workers == 1:
        compiled = compile_task(task, scene, own_feet=own_feet)
        for index in range(trials):
            outcome = run_one(task, scene, seed, index, compiled, surroundings, conditions)
            if on_done is not None:
                on_done(outcome)
            yield outcome
        return
    init = (task, scene, surroundings, conditions, own_feet)
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=init) as pool:
        futures = [pool.submit(_worker, seed, index) for index in range(trials)]
        for future in as_completed(futures):
            outcome = future.result()
            if on_done is not None:
                on_done(outcome)
            yield outcome


def _ray_one(
    task: Task, scene: Scene, job: tuple[int, int, Surroundings | None, Conditions, bool]
) -> TrialOutcome:
    """One trial on a Ray worker: ``job`` is (seed, index, surroundings, conditions,
    own_feet)."""
    seed, index, surroundings, conditions, own_feet = job
    return run_one(task, scene, seed, index, None, surroundings, conditions, own_feet)


def _ray_trials(
    task: Task,
    scene: Scene,
    trials: int,
    seed: int,
    address: str,
    on_done: Callable[[TrialOutcome], None] | None,
    surroundings: Surroundings | None,
    conditions: Conditions,
    own_feet: bool = False,
) -> Iterator[TrialOutcome]:
    try:
        import ray  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise TrialsInputError(
            "--ray needs Ray, an optional dependency: pip install 'hall-twin[ray]'"
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        if address == "local":
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
        else:
            try:
                ray.init(address=address, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise TrialsInputError(f"--ray {address}: cannot connect ({exc})") from None
    try:
        remote = ray.remote(_ray_one)
        task_ref, scene_ref = ray.put(task), ray.put(scene)
        pending = [
            remote.remote(task_ref, scene_ref, (seed, i, surroundings, conditions, own_feet))
            for i in range(trials)
        ]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            outcome = ray.get(done[0])
            if on_done is not None:
                on_done(outcome)
            yield outcome
    finally:
        if started_here:
            ray.shutdown()


def summary(outcomes: list[TrialOutcome], seed: int) -> dict[str, Any]:
    """The trials part of the report."""
    passed = sum(1 for o in outcomes if o.passed)
    low, high = wilson_interval(passed, len(outcomes))
    kinds: dict[str, int] = {}
    lessons: dict[str, dict[str, int]] = {}
    for outcome in outcomes:
        for kind in outcome.kinds:
            kinds[kind] = kinds.get(kind, 0) + 1
        if outcome.lesson is not None:
            row = lessons.setdefault(outcome.lesson, {"trials": 0, "passed": 0})
            row["trials"] += 1
            row["passed"] += int(outcome.passed)
    return {
        "trials": len(outcomes),
        "seed": seed,
        "passed": passed,
        "success_rate": passed / len(outcomes) if outcomes else 0.0,
        "success_rate_95": [round(low, 4), round(high, 4)],
        "failure_kinds": dict(sorted(kinds.items())),
        "lessons": dict(sorted(lessons.items())),
        "outcomes": [o.as_dict() for o in outcomes],
    }
