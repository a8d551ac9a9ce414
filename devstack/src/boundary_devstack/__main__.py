"""`python -m boundary_devstack up`: start the local stack in the foreground.

It writes the env file once every component is healthy, then runs until SIGINT or SIGTERM, when
it stops every process it started and removes its temporary directory and the env file.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from boundary_devstack.process import ComponentError
from boundary_devstack.stack import LocalStack, StackEnv

VERSION_COMMANDS: dict[str, list[str]] = {
    "boundary": ["boundary", "version"],
    "etcd": ["etcd", "--version"],
    "kube-apiserver": ["kube-apiserver", "--version"],
    "kube-controller-manager": ["kube-controller-manager", "--version"],
    "kube-scheduler": ["kube-scheduler", "--version"],
    "kubectl": ["kubectl", "version", "--client"],
    "kwok": ["kwok", "--version"],
    "helm": ["helm", "version", "--short"],
}


def program_versions(bin_dir: Path) -> dict[str, str]:
    versions: dict[str, str] = {}
    for name, argv in VERSION_COMMANDS.items():
        result = subprocess.run(
            [str(bin_dir / argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        lines = (result.stdout + result.stderr).strip().splitlines()
        versions[name] = _pick_version_line(lines)
    return versions


def _pick_version_line(lines: list[str]) -> str:
    # `boundary version` prints a header and then "Version Number: X"; the others print one line.
    for marker in ("Version Number", "version", "Version"):
        for line in lines:
            if marker in line:
                return " ".join(line.split())
    return lines[0] if lines else "(no output)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m boundary_devstack")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack in the foreground")
    up.add_argument("--bin-dir", type=Path, required=True, help="folder of the real programs")
    up.add_argument("--env-file", type=Path, required=True, help="where to write export lines")
    up.add_argument(
        "--exit-when-ready",
        action="store_true",
        help="stop again as soon as every component was healthy (exit 0) instead of waiting",
    )
    up.add_argument(
        "--controller-host",
        default="127.0.0.1",
        help="address the controller's API and cluster listeners bind (default loopback; an "
        "address of the project's Docker bridge lets kind pods reach it)",
    )
    versions = sub.add_parser("versions", help="print each program's version")
    versions.add_argument("--bin-dir", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.command == "versions":
        for name, version in program_versions(args.bin_dir).items():
            print(f"{name:25} {version}")
        return 0
    return _up(args.bin_dir, args.env_file, args.exit_when_ready, args.controller_host)


def _up(bin_dir: Path, env_file: Path, exit_when_ready: bool, controller_host: str) -> int:
    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # Interrupts start-up (LocalStack.start() then stops what it started) or the wait below.
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    stack = LocalStack(bin_dir=bin_dir.resolve(), controller_host=controller_host)
    try:
        env = stack.start(progress=True)
        env.write(env_file)
        _report(bin_dir, env, stack)
        print(f"[stack] ready: source {env_file}", flush=True)
        if not exit_when_ready:
            print("[stack] running until Ctrl-C", flush=True)
            while True:
                # A plain sleep: a signal handler that raises is safe here, unlike inside the
                # lock of threading.Event.wait().
                time.sleep(1.0)
                for process in stack.processes:
                    if not process.running():
                        raise ComponentError(process.name, "exited", process.log_tail())
    except KeyboardInterrupt:
        print("\n[stack] stopping", flush=True)
    except ComponentError as exc:
        print(f"[stack] failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        env_file.unlink(missing_ok=True)
        print("[stack] stopped; nothing left running", flush=True)
    return 0


def _report(bin_dir: Path, env: StackEnv, stack: LocalStack) -> None:
    versions = program_versions(bin_dir)
    print("[stack] component               health   version", flush=True)
    for process in stack.processes:
        program = process.name if process.name in versions else None
        if process.name == "postgresql":
            version = _postgres_version()
        else:
            version = versions.get(program or "", "")
        health = "healthy" if process.running() else "DOWN"
        print(f"[stack] {process.name:24} {health:8} {version}", flush=True)
    for key in ("BOUNDARY_ADDR", "BOUNDARY_CLUSTER_ADDR", "KUBECONFIG"):
        print(f"[stack] {key}={env.values[key]}", flush=True)


def _postgres_version() -> str:
    from boundary_devstack.stack import find_postgres_bin

    result = subprocess.run(
        [str(find_postgres_bin() / "postgres"), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
