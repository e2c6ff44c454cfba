"""Checks on the notebooks that nbval runs: each tiny lesson must still *learn*.

nbval (with --nbval-lax) only checks that every cell runs. Here, the cell tagged `final-metrics`
(the last epoch's validation results) must also clear a floor well above the trivial baseline,
so a change that silently stops training makes `make test` fail."""
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
from lesson_metrics import FINAL_METRICS, cell_tags, shown_results  # noqa: E402  (tools/ is not a package)


class Ceiling(NamedTuple):
    """The bound for a metric where lower is better (a loss): it must stay at or below `ceiling`."""
    ceiling: float
    baseline: float


# notebook -> metric -> (floor, trivial baseline it must clearly beat, for the message);
# for a metric where lower is better (a loss), Ceiling(ceiling, trivial baseline) instead
LEARNING_FLOORS = {
    "lesson3-planet.ipynb": {"fbeta": (0.72, 0.59)},  # baseline: predict the tag frequencies
    "lesson3-imdb.ipynb": {"accuracy": (0.70, 0.50)},  # baseline: the majority class
    "lesson3-camvid.ipynb": {"acc_camvid": (0.80, 0.30)},  # baseline: every pixel Road, the commonest class
    "lesson3-your-own-data.ipynb": {"fbeta": (0.70, 0.59)},  # tiny Planet at 32 px only; baseline as for planet
    # valid MSE in [-1, 1] coordinates; baseline: always predict the mean training point (0.116 on tiny BIWI)
    "lesson3-head-pose.ipynb": {"valid_loss": Ceiling(0.05, 0.116)},
    "lesson3-data-block.ipynb": {"accuracy": (0.85, 0.50)},  # MNIST 3s and 7s; baseline: as many of each
}

# notebook -> tag of another checked cell -> metric -> (floor, trivial baseline), for lessons with two models
TAGGED_FLOORS = {
    # the language model's next-token accuracy; baseline: a unigram model (always the most common token)
    "lesson3-imdb.ipynb": {"lm-final-metrics": {"accuracy": (0.30, 0.10)}},
}


def _problem(name: str, bound, value) -> str | None:
    """Why `value` misses its bound: a (floor, baseline) pair, or a Ceiling for losses; None if it is fine."""
    if isinstance(bound, Ceiling):
        if not isinstance(value, float) or value > bound.ceiling:
            return f"{name} = {value} is above the ceiling {bound.ceiling} (trivial baseline {bound.baseline})"
        return None
    floor, base = bound
    if not isinstance(value, float) or value < floor:
        return f"{name} = {value} is below the floor {floor} (trivial baseline {base})"
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    cell = getattr(item, "cell", None)
    if call.when != "call" or report.failed or cell is None:
        return
    tags = cell_tags(cell)
    floors = dict(LEARNING_FLOORS.get(item.path.name, {})) if FINAL_METRICS in tags else {}
    for tag in tags:
        floors.update(TAGGED_FLOORS.get(item.path.name, {}).get(tag, {}))
    if not floors:
        return
    results = shown_results(getattr(item, "test_outputs", None))
    problems = [p for p in (_problem(name, bound, results.get(name)) for name, bound in floors.items()) if p]
    if problems:
        report.outcome = "failed"
        report.longrepr = f"{item.path.name} stopped learning: " + "; ".join(problems)
