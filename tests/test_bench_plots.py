"""The plotter writes one PNG per family from result rows (no timings are asserted)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from bench.plots import main, plot, slug
from bench.results import row

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows() -> list[dict[str, object]]:
    rows = [
        row("agent DNS", "alias answers", "qps", [7900.0], "dnsmasq", [297000.0]),
        row("agent DNS", "p50 latency", "ms", [0.3], "dnsmasq", [0.1], higher_is_better=False),
        row("agent proxy", "throughput", "MiB/s", [400.0, 421.0, 430.0], "connect", [952.0]),
        row("agent proxy", "throughput", "MiB/s", [400.0, 421.0, 430.0], "loopback", [2000.0]),
        row("agent proxy", "no baseline value", "s", [1.0], "nothing", [0.0]),
    ]
    return [{**asdict(r), "ratio": r.ratio} for r in rows]


def test_one_png_per_family(tmp_path: Path) -> None:
    written = plot(_rows(), tmp_path)
    assert sorted(p.name for p in written) == ["agent_dns.png", "agent_proxy.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent_dns.png", "agent_proxy.png"]
    for path in written:
        assert path.read_bytes().startswith(PNG_MAGIC)


def test_main_redraws_from_latest_json(tmp_path: Path) -> None:
    latest = tmp_path / "latest.json"
    latest.write_text(json.dumps(_rows()))
    assert main([str(latest)]) == 0
    assert (tmp_path / f"{slug('agent proxy')}.png").read_bytes().startswith(PNG_MAGIC)


def test_family_names_become_file_names() -> None:
    assert slug("agent DNS") == "agent_dns"
    assert slug("service sync") == "service_sync"
    assert slug("boundary_api") == "boundary_api"
