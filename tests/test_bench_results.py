"""The results writer produces a well-formed table and JSON (no timings are asserted)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from bench.results import interleaved, markdown, row, spread, write


def test_rows_become_a_table_with_a_baseline_column(tmp_path: Path) -> None:
    rows = [
        row("fam", "creates", "calls/s", [10.0, 12.0, 11.0], "the CLI", [5.0, 6.0]),
        row("fam", "latency", "ms", [2.0], "dnsmasq", [1.0], higher_is_better=False),
    ]
    table = markdown(rows).splitlines()
    assert len(table) == 4
    widths = {line.count("|") for line in table}
    assert widths == {12}
    assert (
        "| fam | creates (calls/s, higher is better) | 11 | 10 | 12 | the CLI | 5.5 | 5 | 6 | "
        "2.00 | 3/2 |" in table
    )
    write(rows, tmp_path, "fam")
    payload = json.loads((tmp_path / "fam.json").read_text())
    assert [r["ratio"] for r in payload] == [2.0, 2.0]
    assert payload[0]["baseline"] == "the CLI"
    assert payload[0]["baseline_runs"] == [5.0, 6.0]


def test_interleaved_runs_take_turns_and_spread_sums_them_up() -> None:
    order: list[str] = []

    def measure(name: str, value: float) -> Callable[[], float]:
        def run() -> float:
            order.append(name)
            return value + len(order)

        return run

    ours, theirs = interleaved(3, measure("ours", 0.0), measure("theirs", 100.0))
    assert order == ["ours", "theirs"] * 3
    assert (ours, theirs) == ([1.0, 3.0, 5.0], [102.0, 104.0, 106.0])
    assert spread(ours) == {"median": 3.0, "min": 1.0, "max": 5.0, "runs": 3}
