"""Benchmark result rows, written as Markdown and JSON. A row always names its baseline: the
same work done by a reference tool in the same run on the same machine."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path


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
        runs=runs,
        higher_is_better=higher_is_better,
    )


def markdown(rows: list[Row]) -> str:
    lines = [
        "| family | metric | this project | baseline | baseline value | ratio | runs | min | max |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        better = "higher is better" if r.higher_is_better else "lower is better"
        lines.append(
            f"| {r.family} | {r.metric} ({r.unit}, {better}) | {r.value:.4g} | {r.baseline} | "
            f"{r.baseline_value:.4g} | {r.ratio:.2f} | {len(r.runs)} | {min(r.runs):.4g} | "
            f"{max(r.runs):.4g} |"
        )
    return "\n".join(lines) + "\n"


def write(rows: list[Row], directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.md").write_text(markdown(rows))
    payload = [{**asdict(r), "ratio": r.ratio} for r in rows]
    (directory / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
