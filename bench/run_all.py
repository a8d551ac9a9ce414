"""`make bench` / `make bench-quick`: every benchmark family against its baseline, on one
shared local stack, merged into bench/results/latest.md and latest.json.

    uv run python -m bench.run_all [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from boundary_devstack.pytest_plugin import default_bin_dir
from boundary_devstack.stack import LocalStack

RESULTS = Path(__file__).resolve().parent / "results"

# family module -> (full arguments, quick arguments)
FAMILIES: dict[str, tuple[list[str], list[str]]] = {
    "api_create": (["--count", "1000"], ["--count", "100", "--concurrency", "1", "8"]),
    "operator_workers": (["--count", "20"], ["--count", "5"]),
    "operator_services": (["--services", "1000"], ["--services", "100", "--samples", "5"]),
    "agent": (["--mib", "100", "--seconds", "10"], ["--mib", "20", "--seconds", "3"]),
}


def merge(families: list[str]) -> tuple[str, list[dict[str, object]]]:
    rows: list[dict[str, object]] = []
    markdown = [
        "# Benchmarks: this project against named baselines, same run, same machine",
        "",
        "Ratios are this project's value over the baseline's.",
        "",
    ]
    for family in families:
        table = RESULTS / f"{family}.md"
        if not table.exists():
            continue
        rows += json.loads((RESULTS / f"{family}.json").read_text())
        markdown += [f"## {family}", "", table.read_text().rstrip(), ""]
        extra = RESULTS / f"{family}.extra.json"
        if extra.exists():
            markdown += ["Other figures:", "", "```json", extra.read_text().rstrip(), "```", ""]
    return "\n".join(markdown) + "\n", rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", default=list(FAMILIES))
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    failed = []
    with LocalStack(bin_dir=default_bin_dir()) as stack:
        env_file = Path(tempfile.mkdtemp()) / "env"
        stack.start(progress=True).write(env_file)
        for family in args.only:
            full, quick = FAMILIES[family]
            started = time.monotonic()
            print(f"[bench] {family} ...", flush=True)
            result = subprocess.run(
                [sys.executable, "-m", f"bench.{family}", *(quick if args.quick else full)],
                env={**os.environ, "BK_STACK_ENV": str(env_file)},
                check=False,
            )
            print(
                f"[bench] {family}: exit {result.returncode} after "
                f"{time.monotonic() - started:.0f} s",
                flush=True,
            )
            if result.returncode:
                failed.append(family)
    markdown, rows = merge(args.only)
    (RESULTS / "latest.md").write_text(markdown)
    (RESULTS / "latest.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown)
    if failed:
        print(f"[bench] failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
