"""The results writer produces a well-formed table and JSON (no timings are asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.results import markdown, row, write


def test_rows_become_a_table_with_a_baseline_column(tmp_path: Path) -> None:
    rows = [
        row("fam", "creates", "calls/s", [10.0, 12.0, 11.0], "the CLI", [5.0, 6.0]),
        row("fam", "latency", "ms", [2.0], "dnsmasq", [1.0], higher_is_better=False),
    ]
    table = markdown(rows).splitlines()
    assert len(table) == 4
    widths = {line.count("|") for line in table}
    assert widths == {10}
    assert (
        "| fam | creates (calls/s, higher is better) | 11 | the CLI | 5.5 | 2.00 | 3 | 10 | 12 |"
        in table
    )
    write(rows, tmp_path, "fam")
    payload = json.loads((tmp_path / "fam.json").read_text())
    assert [r["ratio"] for r in payload] == [2.0, 2.0]
    assert payload[0]["baseline"] == "the CLI"
