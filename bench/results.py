"""Benchmark result rows, written as Markdown and JSON. A row always names its baseline: the
same work done by a reference tool in the same run on the same machine.

Every timing row is the median of several runs, for this project and for its baseline alike,
with min and max printed beside each median. `interleaved()` takes those runs turn about (ours,
theirs, ours, ...), so that a slow spell of the shared machine falls on both sides."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

RUNS = 5
"""Runs per timing row, on each side; the median, with min and max. Five, not three: on this
2-CPU machine a slow spell can take one run in three, and then the median of three is at the
mercy of a second (`boundary connect` ranged 260-535 MiB/s within one run of the proxy bench)."""


@dataclass(frozen=True)
class Row:
    family: str
    metric: str
    unit: str
    value: float
    baseline: str
    baseline_value: float
    runs: list[float]
    """This project's value in each run; `value` is their median."""
    higher_is_better: bool = True
    baseline_runs: list[float] = field(default_factory=list)
    """The baseline's value in each run; `baseline_value` is their median."""

    @property
    def ratio(self) -> float:
        """This project relative to the baseline, as value / baseline_value."""
        return self.value / self.baseline_value if self.baseline_value else float("nan")


def row(
    family: str,
    metric: str,
    unit: str,
    runs: list[float],
    baseline: str,
    baseline_runs: list[float],
    *,
    higher_is_better: bool = True,
) -> Row:
    return Row(
        family=family,
        metric=metric,
        unit=unit,
        value=statistics.median(runs),
        baseline=baseline,
        baseline_value=statistics.median(baseline_runs),
        runs=list(runs),
        higher_is_better=higher_is_better,
        baseline_runs=list(baseline_runs),
    )


def interleaved(runs: int, *measures: Callable[[], T]) -> list[list[T]]:
    """Each measure's value in `runs` rounds, the measures taking turns within a round: one
    list of values per measure, in the order given."""
    values: list[list[T]] = [[] for _ in measures]
    for _ in range(runs):
        for measure, collected in zip(measures, values, strict=True):
            collected.append(measure())
    return values


def interleaved_samples(
    runs: int, turns: int, *measures: Callable[[], list[float]]
) -> list[list[list[float]]]:
    """Like interleaved(), for measures that each return samples, taken `turns` times per run
    in turn and joined: a measure's samples for one run are spread over the whole run, not
    taken in one stretch, so the machine's changes of state (which CPU each process wakes on,
    what else runs) fall on every measure alike, and comparing two of them shows their
    difference, not when each ran."""
    values: list[list[list[float]]] = [[] for _ in measures]
    for _ in range(runs):
        run: list[list[float]] = [[] for _ in measures]
        for _ in range(turns):
            for measure, collected in zip(measures, run, strict=True):
                collected.extend(measure())
        for per_run, samples in zip(values, run, strict=True):
            per_run.append(samples)
    return values


def spread(values: list[float]) -> dict[str, float]:
    """median, min and max of some runs, for figures reported outside the table."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }


def markdown(rows: list[Row]) -> str:
    lines = [
        "| family | metric | this project (median) | min | max | baseline | baseline (median) "
        "| min | max | ratio | runs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        better = "higher is better" if r.higher_is_better else "lower is better"
        theirs = r.baseline_runs or [r.baseline_value]
        lines.append(
            f"| {r.family} | {r.metric} ({r.unit}, {better}) | {r.value:.4g} | "
            f"{min(r.runs):.4g} | {max(r.runs):.4g} | {r.baseline} | {r.baseline_value:.4g} | "
            f"{min(theirs):.4g} | {max(theirs):.4g} | {r.ratio:.2f} | "
            f"{len(r.runs)}/{len(theirs)} |"
        )
    return "\n".join(lines) + "\n"


def write(rows: list[Row], directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.md").write_text(markdown(rows))
    payload = [{**asdict(r), "ratio": r.ratio} for r in rows]
    (directory / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
