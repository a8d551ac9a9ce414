"""`make demo`: the whole job, end to end, on this machine.

1. bring up the local stack (Kubernetes control plane with kwok, PostgreSQL, boundary dev);
2. run the operator;
3. apply examples/ (a BoundaryPKIWorker, an HTTP Service, a PostgreSQL Service with brokered
   credentials);
4. run the worker pod with the pod runner, until it reports to the controller;
5. start real backends behind the Services' cluster IPs (network namespaces) and the agent;
6. resolve the aliases, then send an HTTP request and a psql query through Boundary.

It stays up until Ctrl-C; with --exit (DEMO_EXIT=1) it stops after the walkthrough and exits 0
only if every step worked.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from boundary_devstack import through_agent
from boundary_devstack.agent_process import local_agent
from boundary_devstack.clients import BoundaryCLI, CommandFailed, Kubectl
from boundary_devstack.netns import NamespaceHost
from boundary_devstack.operator_process import operator_process, pod_runner_process
from boundary_devstack.process import ComponentError, ManagedProcess
from boundary_devstack.pytest_plugin import default_bin_dir
from boundary_devstack.stack import LocalStack, find_postgres_bin, wait_for

REPO = Path(__file__).resolve().parents[3]
STEPS = 6
WEB_IP, DB_IP = "10.96.100.10", "10.96.100.20"
DNS_HOST = "127.0.0.53"
DB_PASSWORD = "demo-password-change-me"  # noqa: S105 - the example Secret's value


class DemoFailed(Exception):
    pass


def step(number: int, text: str) -> None:
    print(f"\n[demo {number}/{STEPS}] {text}", flush=True)


def detail(text: str) -> None:
    print(f"           {text}", flush=True)


def require(condition: Callable[[], object], timeout: float, what: str) -> None:
    if not wait_for(condition, timeout):
        raise DemoFailed(f"timed out after {timeout:.0f} s waiting for {what}")


BACKEND_IMAGES = {
    "WEB_IMAGE": "docker.io/library/nginx:1.27",
    "DB_IMAGE": "docker.io/library/postgres:17",
}
"""The example backends' images, as tools/e2e-kind.sh defaults them. Here kwok only pretends to
run those pods: the demo's real backends own the Services' cluster IPs in namespaces."""


def apply_examples(kubectl: Kubectl, values: dict[str, str]) -> None:
    for path in sorted((REPO / "examples").glob("*.yaml")):
        text = string.Template(path.read_text()).substitute(BACKEND_IMAGES | values)
        kubectl("apply", "-f", "-", input_text=text)
        detail(f"applied examples/{path.name}")


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start_web_backend(stack: ExitStack, work: Path) -> None:
    root = work / "www"
    root.mkdir()
    (root / "index.html").write_text("hello from the web Service, through Boundary\n")
    host = NamespaceHost(WEB_IP, host_side="10.96.254.1").create()
    stack.callback(host.delete)
    server = host.popen(
        [sys.executable, "-m", "http.server", "80", "--bind", WEB_IP, "--directory", str(root)]
    )
    stack.callback(_stop_group, server)


def _apiserver_address(kubectl: Kubectl) -> str:
    config = json.loads(kubectl("config", "view", "--minify", "-o", "json"))
    server: str = config["clusters"][0]["cluster"]["server"]
    return server.removeprefix("https://")


def start_db_backend(stack: ExitStack, work: Path) -> None:
    """A real PostgreSQL owning the db Service's cluster IP, with the example's credentials."""
    pg = find_postgres_bin()
    data = work / "pgdata"
    data.mkdir()
    data.parent.chmod(0o755)
    password_file = work / "pwfile"
    password_file.write_text(DB_PASSWORD + "\n")
    for path in (data, password_file):
        shutil.chown(path, "nobody")
    as_nobody = ["runuser", "-u", "nobody", "--"]
    subprocess.run(
        [
            *as_nobody,
            str(pg / "initdb"),
            "-D",
            str(data),
            "-U",
            "app",
            f"--pwfile={password_file}",
            "--auth=scram-sha-256",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write("host all all 0.0.0.0/0 scram-sha-256\n")
    host = NamespaceHost(DB_IP, host_side="10.96.254.2").create()
    stack.callback(host.delete)
    server = host.popen(
        [
            *as_nobody,
            str(pg / "postgres"),
            "-D",
            str(data),
            "-h",
            DB_IP,
            "-p",
            "5432",
            "-k",
            str(data),
        ]
    )
    stack.callback(_stop_group, server)
    pg_isready = str(pg / "pg_isready")
    require(
        lambda: (
            subprocess.run(
                ["ip", "netns", "exec", host.name, pg_isready, "-q", "-h", DB_IP], check=False
            ).returncode
            == 0
        ),
        60,
        "PostgreSQL",
    )


def run(exit_when_done: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="boundary-k8s-demo-"))
    work.chmod(0o755)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, work, True)
        step(1, "bringing up the local stack")
        local = LocalStack(bin_dir=default_bin_dir())
        stack.callback(local.stop)
        env = local.start(progress=True)
        values = env.values
        kubectl, cli = Kubectl(env), BoundaryCLI(env)
        detail(f"controller {values['BOUNDARY_ADDR']}, apiserver via {values['KUBECONFIG']}")

        step(2, "running the operator")
        kubectl("apply", "-f", str(REPO / "crds"))
        kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/boundarypkiworkers.workers.boundaryproject.io",
            "crd/boundarykubernetesaccesses.workers.boundaryproject.io",
        )
        operator = operator_process(
            env,
            work,
            cluster_name="demo",
            namespaces=["demo"],
            extra_env={
                "BOUNDARY_OPERATOR_DEFAULT_SCOPE": values["BOUNDARY_PROJECT_ID"],
                "BOUNDARY_OPERATOR_TARGET_ADDRESS": "clusterip",
                "BOUNDARY_OPERATOR_RESYNC_SECONDS": "10",
                # The example Kubernetes access's target: the stack's apiserver, which has no
                # kubernetes.default.svc here.
                "BOUNDARY_OPERATOR_KUBE_API_ADDRESS": _apiserver_address(kubectl),
            },
        )
        operator.start()
        stack.callback(operator.stop)
        detail(f"boundary-operator run (log: {operator.log_path})")

        step(3, "applying examples/")
        apply_examples(kubectl, values)

        step(4, "running the worker pod with the pod runner")
        require(lambda: _exists(kubectl, "pod", "edge-0"), 60, "pod demo/edge-0")
        env_file = work / "stack.env"
        env.write(env_file)
        runner = pod_runner_process(env_file, work / "pods", work, "demo", "edge-0")
        runner.start()
        stack.callback(runner.stop)
        try:
            require(
                lambda: _status(kubectl).get("connectedReplicas") == 1,
                120,
                "the worker to report to the controller",
            )
        except DemoFailed as exc:
            raise DemoFailed(
                f"{exc}\n--- pod runner log ---\n{runner.log_tail(15)}\n"
                f"--- status ---\n{json.dumps(_status(kubectl))}"
            ) from None
        replica: dict[str, str] = _status(kubectl)["replicas"][0]  # type: ignore[index]
        detail(
            f"worker {replica['workerName']} ({replica['workerId']}) connected, "
            f"{replica['releaseVersion']}"
        )
        require(lambda: _targets(cli) >= 2, 60, "the Services' targets")
        detail("targets and aliases published: web.demo.boundary, db.demo.boundary")

        step(5, "starting the backends and the agent")
        if os.geteuid() != 0:
            raise DemoFailed("the backends live in network namespaces: run the demo as root")
        start_web_backend(stack, work)
        start_db_backend(stack, work)
        detail(f"HTTP server on {WEB_IP}:80, PostgreSQL on {DB_IP}:5432 (network namespaces)")
        agent = local_agent(work / "agent", DNS_HOST)
        agent.start()
        stack.callback(agent.stop)
        agent.login_as_admin(env)
        dns_port, control_port = agent.dns_port, agent.control_port
        detail(f"boundary-agent: DNS on {DNS_HOST}:{dns_port}, control API on {control_port}")

        step(6, "resolving the aliases and connecting through Boundary")
        web = through_agent.resolve(DNS_HOST, dns_port, "web.demo.boundary")
        db = through_agent.resolve(DNS_HOST, dns_port, "db.demo.boundary")
        detail(f"dig web.demo.boundary -> {web};  dig db.demo.boundary -> {db}")
        page = through_agent.http_get(web, "web.demo.boundary").strip()
        detail(f"curl http://web.demo.boundary/ -> {page!r}")
        username, password = through_agent.brokered_credentials(
            db, 5432, control_port, "db.demo.boundary"
        )
        detail(f"the session brokered credentials for user {username!r}")
        answer = through_agent.psql(
            db,
            username,
            password,
            "postgres",
            "select 'hello from ' || current_user || ' on ' || inet_server_addr()",
        )
        detail(f"psql -> {answer!r}")
        print("\n[demo] every step worked.", flush=True)
        if not exit_when_done:
            print(
                "[demo] running until Ctrl-C. Try: "
                f"dig @{DNS_HOST} -p {dns_port} web.demo.boundary",
                flush=True,
            )
            _wait_for_interrupt(agent.process)


def _wait_for_interrupt(agent: ManagedProcess) -> None:
    try:
        while agent.running():
            time.sleep(1)
    except KeyboardInterrupt:
        print("\n[demo] stopping", flush=True)


def _exists(kubectl: Kubectl, kind: str, name: str) -> bool:
    try:
        kubectl("get", kind, name, "-n", "demo")
    except CommandFailed:
        return False
    return True


def _status(kubectl: Kubectl) -> dict[str, object]:
    try:
        status: dict[str, object] = (
            kubectl.get_json("bpw", "edge", "-n", "demo").get("status") or {}
        )
    except CommandFailed:
        return {}
    return status


def _targets(cli: BoundaryCLI) -> int:
    items = cli("targets", "list", "-scope-id", "global", "-recursive")["items"] or []
    return sum(t.get("name", "").startswith("demo/demo/") for t in items)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m boundary_devstack.demo")
    parser.add_argument(
        "--exit",
        action="store_true",
        help="stop after the walkthrough; exit 0 only if every step worked",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        run(args.exit)
    except (
        DemoFailed,
        ComponentError,
        CommandFailed,
        through_agent.NotThroughBoundary,
        subprocess.CalledProcessError,
    ) as exc:
        print(f"\n[demo] FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("\n[demo] interrupted", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
