"""One PNG per benchmark family: for each metric, this project beside its baseline(s), with
min/max whiskers where there were several runs and the ratio written over each baseline bar.

    uv run python -m bench.plots [bench/results/latest.json]

run_all calls plot() after it writes latest.json; this entry point redraws from that file."""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

RESULTS = Path(__file__).resolve().parent / "results"
OURS_COLOR = "#2b6cb0"
BASELINE_COLORS = ["#a0aec0", "#718096", "#cbd5e0", "#4a5568"]
BETTER_COLOR, WORSE_COLOR = "#2f855a", "#c53030"
COLUMNS = 3


def slug(family: str) -> str:
    """The file name a family's plot gets: "agent DNS" -> "agent_dns"."""
    return re.sub(r"[^a-z0-9]+", "_", family.lower()).strip("_") or "family"


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float | str) else float("nan")


def _runs(r: Mapping[str, object], key: str = "runs") -> list[float]:
    runs = r.get(key)
    return [float(v) for v in runs if isinstance(v, int | float)] if isinstance(runs, list) else []


def _by_metric(
    rows: Sequence[Mapping[str, object]],
) -> dict[tuple[str, str], list[Mapping[str, object]]]:
    """Rows of one family grouped by (metric, unit), in order of first appearance: one metric can
    have several baselines (e.g. `boundary connect` and direct loopback)."""
    groups: dict[tuple[str, str], list[Mapping[str, object]]] = {}
    for r in rows:
        groups.setdefault((str(r["metric"]), str(r["unit"])), []).append(r)
    return groups


def _label(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.4g}"


def _draw_metric(axes: Axes, metric: str, unit: str, rows: list[Mapping[str, object]]) -> None:
    first = rows[0]
    higher_is_better = bool(first.get("higher_is_better", True))
    ours = _number(first["value"])
    runs = _runs(first)
    names = ["this project", *(str(r["baseline"]) for r in rows)]
    values = [ours, *(_number(r["baseline_value"]) for r in rows)]
    positions = list(range(len(values)))
    bars = axes.bar(
        positions,
        [0.0 if math.isnan(v) else v for v in values],
        color=[OURS_COLOR, *(BASELINE_COLORS[i % len(BASELINE_COLORS)] for i in range(len(rows)))],
        width=0.6,
    )
    bars[0].set_label("this project")
    for bar, r in zip(bars[1:], rows, strict=True):
        bar.set_label(f"baseline: {r['baseline']}")
    spreads = [(0, ours, runs)] + [
        (i + 1, _number(r["baseline_value"]), _runs(r, "baseline_runs")) for i, r in enumerate(rows)
    ]
    labelled = False
    for position, median, values_run in spreads:
        if len(values_run) > 1 and not math.isnan(median):
            axes.errorbar(
                [position],
                [median],
                yerr=[[median - min(values_run)], [max(values_run) - median]],
                fmt="none",
                ecolor="black",
                capsize=5,
                label=None if labelled else f"min/max over {len(values_run)} runs",
            )
            labelled = True
    every_run = [v for _, _, values_run in spreads for v in values_run]
    top = max([v for v in [*values, *every_run] if not math.isnan(v)], default=1.0) or 1.0
    for position, value in zip(positions, values, strict=True):
        axes.annotate(
            _label(value),
            (position, 0 if math.isnan(value) else value),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    for position, r in zip(positions[1:], rows, strict=True):
        ratio = _number(r.get("ratio", float("nan")))
        if math.isnan(ratio):
            text, color = "ratio n/a", "black"
        else:
            better = ratio >= 1 if higher_is_better else ratio <= 1
            text, color = f"ratio {ratio:.3g}", BETTER_COLOR if better else WORSE_COLOR
        axes.text(
            position,
            top * 1.12,
            text,
            ha="center",
            va="bottom",
            fontsize=8,
            fontweight="bold",
            color=color,
        )
    axes.set_ylim(0, top * 1.3)
    axes.set_xticks(positions, [textwrap.fill(n, 18) for n in names], fontsize=7)
    axes.set_ylabel(f"{unit} ({'higher' if higher_is_better else 'lower'} is better)", fontsize=8)
    axes.set_title(textwrap.fill(metric, 40), fontsize=9)
    axes.tick_params(axis="y", labelsize=7)
    axes.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncols=2, frameon=False)


def plot(rows: Sequence[Mapping[str, object]], directory: Path = RESULTS) -> list[Path]:
    """Write <directory>/<slug(family)>.png for each family in rows; return the paths."""
    families: dict[str, list[Mapping[str, object]]] = {}
    for r in rows:
        families.setdefault(str(r["family"]), []).append(r)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for family, family_rows in families.items():
        metrics = _by_metric(family_rows)
        columns = min(COLUMNS, len(metrics))
        lines = math.ceil(len(metrics) / columns)
        figure = Figure(figsize=(max(5.5, 4.6 * columns), 3.9 * lines + 0.8), layout="constrained")
        FigureCanvasAgg(figure)
        figure.suptitle(
            f"{family}\nthis project against its baselines (same run, same machine)", fontsize=11
        )
        axes = figure.subplots(lines, columns, squeeze=False)
        for index, ((metric, unit), metric_rows) in enumerate(metrics.items()):
            _draw_metric(axes[index // columns][index % columns], metric, unit, metric_rows)
        for index in range(len(metrics), lines * columns):
            axes[index // columns][index % columns].set_visible(False)
        path = directory / f"{slug(family)}.png"
        figure.savefig(path, dpi=110)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("latest", nargs="?", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--out", type=Path, help="directory for the PNGs (default: beside it)")
    args = parser.parse_args(argv)
    rows = json.loads(args.latest.read_text())
    for path in plot(rows, args.out or args.latest.parent):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
