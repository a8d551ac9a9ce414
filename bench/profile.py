"""pyinstrument profiles of the paths where this project is slower than its baseline, under the
same load the benchmarks put on them:

- agent_dns: the agent answering alias names under dnsperf (baseline: dnsmasq);
- agent_dns_forwarded: the agent forwarding non-alias names to its upstream under dnsperf;
- agent_proxy: repeated downloads through the agent's proxy, after a first connection
  (baseline: `boundary connect`);
- service_sync: the operator from the creation of N Services to all targets and aliases
  present (baseline: the raw-API floor);
- worker_reconcile: the operator reconciling N BoundaryPKIWorkers, created one after another.

Each writes bench/results/profile-<name>.txt (self time by frame, then the call tree, in
percent of the phase's wall time) and profile-<name>.html. The agent and the operator run as
the benchmarks run them, under bench.profiling, which profiles only the phase under load.

    uv run python -m bench.profile [--only agent_dns agent_proxy ...] [--quick]

Uses BK_STACK_ENV's running stack when set, otherwise starts one (as every family does).
`make bench` does not run this; `python -m bench.run_all --profile` runs it after the families.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

from bench import operator_services, operator_workers
from bench.agent import AGENT_HOST, _dnsperf, running_agent
from bench.api_create import stack
from bench.profiling import Profiled
from boundary_devstack.clients import Kubectl
from boundary_devstack.stack import StackEnv

RESULTS = Path(__file__).resolve().parent / "results"
AGENT_PHASES = ("agent_dns", "agent_dns_forwarded", "agent_proxy")
PHASES = (*AGENT_PHASES, "service_sync", "worker_reconcile")
MAX_FAILED_DOWNLOADS = 5


def _note(report: Path, text: str) -> None:
    """Add what the load measured while profiled to the report, and print it."""
    with report.open("a") as handle:
        handle.write(f"\n# measured while profiled: {text}\n")
    print(f"[profile] {report.stem}: {text}", flush=True)


def profile_agent(env: StackEnv, out: Path, phases: list[str], seconds: int, mib: int) -> None:
    profiled = Profiled(out)
    with running_agent(env, mib, profiled) as running:
        for phase, names in (
            ("agent_dns", running.alias_names),
            ("agent_dns_forwarded", running.forward_names),
        ):
            if phase in phases:
                with profiled.phase(phase):
                    qps = _dnsperf(AGENT_HOST, running.dns_port, names, seconds, running.work)
                _note(profiled.written[-1], f"{qps:.0f} qps (dnsperf, 8 clients, {seconds} s)")
        if "agent_proxy" in phases:
            running.alias_download()  # the first connection: authorize-session and handshake
            speeds: list[float] = []
            failed = 0
            with profiled.phase("agent_proxy"):
                deadline = time.monotonic() + seconds
                while not speeds or time.monotonic() < deadline:
                    try:
                        speeds.append(running.alias_download()[0])
                    except subprocess.CalledProcessError:
                        # Seen: the worker refusing a later connection of the session (TOFU).
                        failed += 1
                        if failed > MAX_FAILED_DOWNLOADS:
                            raise
            _note(
                profiled.written[-1],
                f"{len(speeds)} downloads of {mib} MiB, "
                + ", ".join(f"{speed:.0f}" for speed in speeds)
                + f" MiB/s; {failed} failed (see {running.local.process.log_path})",
            )


def profile_services(env: StackEnv, out: Path, services: int) -> None:
    profiled = Profiled(out)
    result, _ = asyncio.run(
        operator_services.through_operator(env, Kubectl(env), services, 0, profiled, extras=False)
    )
    _note(profiled.written[-1], f"{services} Services converged in {result['converge_s']:.1f} s")


def profile_workers(env: StackEnv, out: Path, count: int) -> None:
    profiled = Profiled(out)
    kubectl = Kubectl(env)
    kubectl("apply", "-f", str(operator_workers.REPO / "crds"))
    samples, _ = asyncio.run(operator_workers.through_operator(env, kubectl, count, profiled))
    _note(
        profiled.written[-1],
        f"{count} workers, apply to registered p50 "
        f"{operator_workers.percentile(samples, 0.5):.3f} s",
    )


def summary(report: Path, functions: int = 12) -> str:
    """One report's header, its self time by package, and its top functions by self time."""
    lines = report.read_text().splitlines()
    shown, section, count = [], "", 0
    for line in lines:
        if line.startswith("## "):
            section, count = line, 0
            if "Call tree" not in line:
                shown.append(line)
        elif line.startswith("#"):
            shown.append(line)
        elif line.strip() and "Call tree" not in section:
            count += 1
            if "by package" in section or count <= functions:
                shown.append(line)
    return "\n".join(shown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", choices=PHASES, default=list(PHASES))
    parser.add_argument("--quick", action="store_true", help="the bench-quick sizes")
    parser.add_argument("--seconds", type=int, help="load per agent phase (default 10, quick 3)")
    parser.add_argument("--mib", type=int, help="download size (default 100, quick 20)")
    parser.add_argument("--services", type=int, help="Services to sync (default 1000, quick 100)")
    parser.add_argument("--workers", type=int, help="workers to reconcile (default 20, quick 5)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    seconds = args.seconds or (3 if args.quick else 10)
    mib = args.mib or (20 if args.quick else 100)
    services = args.services or (100 if args.quick else 1000)
    workers = args.workers or (5 if args.quick else 20)
    with stack() as env:
        if agent_phases := [p for p in args.only if p in AGENT_PHASES]:
            profile_agent(env, args.out, agent_phases, seconds, mib)
        if "service_sync" in args.only:
            profile_services(env, args.out, services)
        if "worker_reconcile" in args.only:
            profile_workers(env, args.out, workers)
    for phase in args.only:
        print(f"\n{summary(args.out / f'profile-{phase}.txt')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
