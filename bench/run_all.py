"""`make bench` / `make bench-quick`: every benchmark family against its baseline, on one
shared local stack, merged into bench/results/latest.md and latest.json.

    uv run python -m bench.run_all [--quick] [--only FAMILY...] [--profile]

Also draws bench/results/<family>.png (bench.plots); --profile then writes pyinstrument
profiles of the slower paths (bench.profile) as bench/results/profile-<path>.txt/.html.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.plots import plot
from boundary_devstack.pytest_plugin import default_bin_dir
from boundary_devstack.stack import LocalStack

RESULTS = Path(__file__).resolve().parent / "results"

THREE_RUNS = ["--runs", "3"]
"""Where bench.results.RUNS (five) is too slow or too much: the quick form, and Service sync."""

# family module -> (full arguments, quick arguments), in the order they run. The agent goes
# first: it logs in as the admin, who can resolve every alias the other families leave behind
# (api_create keeps its thousands), and its login would wait for all of them.
FAMILIES: dict[str, tuple[list[str], list[str]]] = {
    "agent": (["--mib", "100", "--seconds", "10"], ["--mib", "20", "--seconds", "3", *THREE_RUNS]),
    "api_create": (["--count", "1000"], ["--count", "100", "--concurrency", "1", "8"]),
    "operator_workers": (["--count", "20"], ["--count", "5", *THREE_RUNS]),
    # Three runs: in the fourth floor run of five, `boundary dev` (on this machine's 2 cores)
    # left a target create unanswered past the client's read timeout, after 7,000 targets and
    # aliases had come and gone; the family then fails and its row is lost.
    "operator_services": (
        ["--services", "1000", *THREE_RUNS],
        ["--services", "100", "--samples", "5", *THREE_RUNS],
    ),
}


def merge(families: list[str], failed: Sequence[str] = ()) -> tuple[str, list[dict[str, object]]]:
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
            if family in failed:
                markdown += [f"## {family}", "", "Failed in this run: no results.", ""]
            continue
        rows += json.loads((RESULTS / f"{family}.json").read_text())
        markdown += [f"## {family}", "", table.read_text().rstrip(), ""]
        extra = RESULTS / f"{family}.extra.json"
        if extra.exists():
            markdown += ["Other figures:", "", "```json", extra.read_text().rstrip(), "```", ""]
    return "\n".join(markdown) + "\n", rows


def _run(module: str, argv: list[str], env_file: Path) -> int:
    """`python -m bench.<module> argv` against the shared stack; its exit code."""
    started = time.monotonic()
    print(f"[bench] {module} ...", flush=True)
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *argv],
        env={**os.environ, "BK_STACK_ENV": str(env_file)},
        check=False,
    )
    print(
        f"[bench] {module}: exit {result.returncode} after {time.monotonic() - started:.0f} s",
        flush=True,
    )
    return result.returncode


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", default=list(FAMILIES))
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the families, write pyinstrument profiles of the slower paths "
        "(bench.profile) on the same stack",
    )
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    failed = []
    with LocalStack(bin_dir=default_bin_dir()) as stack:
        env_file = Path(tempfile.mkdtemp()) / "env"
        stack.start(progress=True).write(env_file)
        for family in args.only:
            full, quick = FAMILIES[family]
            for stale in (".md", ".json", ".extra.json"):  # a failed run must not merge old ones
                (RESULTS / f"{family}{stale}").unlink(missing_ok=True)
            if _run(family, quick if args.quick else full, env_file):
                failed.append(family)
        if args.profile and _run("profile", ["--quick"] if args.quick else [], env_file):
            failed.append("profile")
    markdown, rows = merge(args.only, failed)
    (RESULTS / "latest.md").write_text(markdown)
    (RESULTS / "latest.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown)
    for path in plot(rows, RESULTS):
        print(f"[bench] plot: {path}")
    if failed:
        print(f"[bench] failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
