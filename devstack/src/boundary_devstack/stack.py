"""The real local stack: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok with
one fake Node, PostgreSQL, and `boundary dev` on a fresh database, all on loopback with free
ports.

`LocalStack.start()` either returns with every component healthy or raises `ComponentError` after
stopping everything it started: it never leaves a half-started stack behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from boundary_devstack.net import free_port, http_json, http_ok
from boundary_devstack.pki import ControlPlanePKI, create_control_plane_pki
from boundary_devstack.process import ComponentError, ManagedProcess

# Seed data of `boundary dev` (internal/cmd/base/initial_resources.go and dev.go).
DEV_AUTH_METHOD_ID = "ampw_1234567890"
DEV_LOGIN_NAME = "admin"
DEV_PASSWORD = "password"  # noqa: S105 - boundary dev's documented seed password
DEV_ORG_ID = "o_1234567890"
DEV_PROJECT_ID = "p_1234567890"

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_API_IP = "10.96.0.1"
POD_CIDR = "10.244.0.0/16"
FAKE_NODE_NAME = "kwok-node-0"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
"""The apiserver's service-account token issuer, and so its API audience too."""

REQUIRED_PROGRAMS = (
    "boundary",
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
)


def find_postgres_bin() -> Path:
    """Debian installs PostgreSQL's server programs under /usr/lib/postgresql/<major>/bin."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).resolve().parent
    raise ComponentError("postgresql", "no postgres binary (install Debian's postgresql)")


@dataclass
class StackEnv:
    """What a client of the stack needs, written to `.stack/env` as export lines."""

    values: dict[str, str]

    def export_lines(self) -> str:
        return "".join(f"export {k}={_shell_quote(v)}\n" for k, v in sorted(self.values.items()))

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.export_lines())
        tmp.chmod(0o600)
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> StackEnv:
        values: dict[str, str] = {}
        for line in path.read_text().splitlines():
            if not line.startswith("export "):
                continue
            key, _, raw = line.removeprefix("export ").partition("=")
            values[key] = _shell_unquote(raw)
        return cls(values)


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _shell_unquote(raw: str) -> str:
    if raw.startswith("'") and raw.endswith("'"):
        return raw[1:-1].replace("'\"'\"'", "'")
    return raw


@dataclass
class LocalStack:
    bin_dir: Path
    work_dir: Path | None = None
    """Temporary directory for data, certificates and logs; made (and removed) by the stack when
    not given."""
    keep_work_dir: bool = False
    fixed_ports: dict[str, int] = field(default_factory=dict)
    """Ports to use instead of free ones, by component name (for tests of start-up failures)."""
    controller_host: str = "127.0.0.1"
    """Where the controller's API and cluster listeners bind, and the cluster address it tells
    workers: loopback, or for the kind e2e an address of the project's own Docker bridge, so
    that pods reach it (never a public address)."""
    processes: list[ManagedProcess] = field(default_factory=list)
    env: StackEnv | None = None
    _own_work_dir: bool = False
    _progress: bool = False
    _kubeconfig: Path = field(default=Path("kubeconfig"))

    # ------------------------------------------------------------------ lifecycle

    def start(self, progress: bool = False) -> StackEnv:
        missing = [p for p in REQUIRED_PROGRAMS if not (self.bin_dir / p).exists()]
        if missing:
            raise ComponentError(
                "tools", f"missing in {self.bin_dir}: {', '.join(missing)} (run `make tools`)"
            )
        if self.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="boundary-k8s-stack-"))
            self._own_work_dir = True
        # PostgreSQL runs as an unprivileged user when we are root; it must reach its folder.
        self.work_dir.chmod(0o755)
        self._progress = progress
        try:
            self.env = self._start_all()
        except BaseException:
            self.stop()
            raise
        return self.env

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()
        if self._own_work_dir and self.work_dir and not self.keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def component(self, name: str) -> ManagedProcess:
        """A running component by name ("kube-apiserver", "boundary", ...), for fault tests."""
        for process in self.processes:
            if process.name == name:
                return process
        raise KeyError(f"no component {name!r}; have {[p.name for p in self.processes]}")

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ helpers

    def _say(self, message: str) -> None:
        if self._progress:
            print(f"[stack] {message}", flush=True)

    def _spawn(
        self,
        name: str,
        argv: list[str],
        *,
        user: str | None = None,
        env: dict[str, str] | None = None,
    ) -> ManagedProcess:
        assert self.work_dir is not None
        # Temporary files of every component (boundary dev makes several) go inside the work
        # directory, so they are removed with it.
        tmp = self.work_dir / "tmp"
        tmp.mkdir(exist_ok=True)
        tmp.chmod(0o1777)
        process = ManagedProcess(
            name=name,
            argv=argv,
            log_path=self.work_dir / "logs" / f"{name}.log",
            env={**(env or os.environ), "TMPDIR": str(tmp)},
            user=user,
        )
        self.processes.append(process)
        process.start()
        return process

    def _port(self, component: str) -> int:
        return self.fixed_ports.get(component) or free_port()

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def kubectl(self, *args: str, input_text: str | None = None) -> str:
        result = subprocess.run(
            [self._bin("kubectl"), "--kubeconfig", str(self._kubeconfig), *args],
            input=input_text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise ComponentError("kubectl", f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    # ------------------------------------------------------------------ components

    def _start_all(self) -> StackEnv:
        assert self.work_dir is not None
        work = self.work_dir
        pki = create_control_plane_pki(work / "pki", SERVICE_API_IP)

        postgres_port = self._port("postgresql")
        postgres = self._start_postgres(postgres_port)
        etcd_port = self._port("etcd")
        etcd = self._spawn(
            "etcd",
            [
                self._bin("etcd"),
                "--name",
                "devstack",
                "--data-dir",
                str(work / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls",
                "http://127.0.0.1:0",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
        )
        self._say("waiting for etcd and PostgreSQL")
        etcd.wait_healthy(lambda: http_ok(f"http://127.0.0.1:{etcd_port}/health"), 60)
        pg_isready = str(find_postgres_bin() / "pg_isready")
        postgres.wait_healthy(
            lambda: (
                subprocess.run(
                    [pg_isready, "-q", "-h", "127.0.0.1", "-p", str(postgres_port)], check=False
                ).returncode
                == 0
            ),
            60,
        )
        self._create_database(postgres, postgres_port)

        apiserver_port = self._port("kube-apiserver")
        apiserver = self._spawn(
            "kube-apiserver",
            [
                self._bin("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--secure-port={apiserver_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={work / 'pki'}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki.service_account_pub}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
            ],
        )

        boundary_ports = {
            name: self._port(f"boundary-{name}") for name in ("api", "cluster", "proxy", "ops")
        }
        controller_host = self.controller_host
        boundary = self._spawn(
            "boundary",
            [
                self._bin("boundary"),
                "dev",
                "-database-url",
                f"postgres://postgres@127.0.0.1:{postgres_port}/boundary?sslmode=disable",
                f"-api-listen-address={controller_host}:{boundary_ports['api']}",
                f"-cluster-listen-address={controller_host}:{boundary_ports['cluster']}",
                f"-controller-public-cluster-address={controller_host}:{boundary_ports['cluster']}",
                f"-proxy-listen-address=127.0.0.1:{boundary_ports['proxy']}",
                f"-ops-listen-address=127.0.0.1:{boundary_ports['ops']}",
                f"-worker-auth-storage-dir={work / 'boundary-dev-worker'}",
                "-skip-plugins",
                "-skip-oidc-auth-method-creation",
                "-skip-ldap-auth-method-creation",
            ],
            env={**os.environ, "BOUNDARY_LOG_LEVEL": "info"},
        )

        kubeconfig = self._write_kubeconfig(pki, apiserver_port)
        self._kubeconfig = kubeconfig
        self._say("waiting for kube-apiserver")
        apiserver.wait_healthy(
            lambda: http_ok(
                f"https://127.0.0.1:{apiserver_port}/readyz",
                ca_file=pki.ca_cert,
                cert=(pki.admin_cert, pki.admin_key),
            ),
            120,
        )
        self._start_kube_controllers(pki, kubeconfig)

        self._say("waiting for boundary dev")
        api_addr = f"http://{controller_host}:{boundary_ports['api']}"
        boundary.wait_healthy(lambda: _boundary_ready(api_addr), 180, interval=0.5)

        return StackEnv(
            {
                "KUBECONFIG": str(kubeconfig),
                "BOUNDARY_ADDR": api_addr,
                "BOUNDARY_AUTH_METHOD_ID": DEV_AUTH_METHOD_ID,
                "BOUNDARY_LOGIN_NAME": DEV_LOGIN_NAME,
                "BOUNDARY_PASSWORD": DEV_PASSWORD,
                "BOUNDARY_CLUSTER_ADDR": f"{controller_host}:{boundary_ports['cluster']}",
                "BOUNDARY_DEV_WORKER_PROXY_ADDR": f"127.0.0.1:{boundary_ports['proxy']}",
                "BOUNDARY_ORG_ID": DEV_ORG_ID,
                "BOUNDARY_PROJECT_ID": DEV_PROJECT_ID,
                "STACK_BIN": str(self.bin_dir),
                "STACK_WORK_DIR": str(work),
                "STACK_POSTGRES_URL": f"postgres://postgres@127.0.0.1:{postgres_port}/postgres",
                "STACK_ETCD_URL": f"http://127.0.0.1:{etcd_port}",
                "STACK_FAKE_NODE": FAKE_NODE_NAME,
            }
        )

    def _start_postgres(self, port: int) -> ManagedProcess:
        assert self.work_dir is not None
        pg_bin = find_postgres_bin()
        data = self.work_dir / "postgres"
        data.mkdir()
        user = "nobody" if os.geteuid() == 0 else None
        if user:
            shutil.chown(data, user)
            reachable = (
                subprocess.run(
                    ["runuser", "-u", user, "--", "test", "-w", str(data)], check=False
                ).returncode
                == 0
            )
            if not reachable:
                raise ComponentError(
                    "postgresql",
                    f"{data} is not reachable by user {user!r}, who runs PostgreSQL because it "
                    "refuses to run as root; point TMPDIR at a folder every user can traverse",
                )
        initdb = ManagedProcess(
            "postgresql-initdb",
            [
                str(pg_bin / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            log_path=self.work_dir / "logs" / "postgresql-initdb.log",
            user=user,
        )
        initdb.start()
        assert initdb._popen is not None
        if initdb._popen.wait(timeout=120) != 0:
            raise ComponentError("postgresql", "initdb failed", initdb.log_tail())
        return self._spawn(
            "postgresql",
            [
                str(pg_bin / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(data),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ],
            user=user,
        )

    def _create_database(self, postgres: ManagedProcess, port: int) -> None:
        # `boundary dev -database-url` needs an existing, empty database.
        result = subprocess.run(
            [
                str(find_postgres_bin() / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "CREATE DATABASE boundary",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise ComponentError(
                "postgresql",
                f"CREATE DATABASE failed: {result.stderr.strip()}",
                postgres.log_tail(),
            )

    def _write_kubeconfig(self, pki: ControlPlanePKI, port: int) -> Path:
        assert self.work_dir is not None
        path = self.work_dir / "kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "devstack",
            "clusters": [
                {
                    "name": "devstack",
                    "cluster": {
                        "server": f"https://127.0.0.1:{port}",
                        "certificate-authority": str(pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(pki.admin_cert),
                        "client-key": str(pki.admin_key),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "devstack",
                    "context": {"cluster": "devstack", "user": "admin", "namespace": "default"},
                }
            ],
        }
        path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML
        path.chmod(0o600)
        return path

    def _start_kube_controllers(self, pki: ControlPlanePKI, kubeconfig: Path) -> None:
        common = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
        ]
        cm_port, scheduler_port = free_port(), free_port()
        controller_manager = self._spawn(
            "kube-controller-manager",
            [
                self._bin("kube-controller-manager"),
                *common,
                f"--secure-port={cm_port}",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                "--use-service-account-credentials",
                "--controllers=*",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
            ],
        )
        scheduler = self._spawn(
            "kube-scheduler",
            [
                self._bin("kube-scheduler"),
                *common,
                f"--secure-port={scheduler_port}",
            ],
        )
        kwok = self._spawn(
            "kwok",
            [
                self._bin("kwok"),
                f"--kubeconfig={kubeconfig}",
                "--manage-all-nodes=true",
                f"--cidr={POD_CIDR}",
                "--node-ip=127.0.0.1",
                f"--server-address=127.0.0.1:{free_port()}",
            ],
        )
        self._say("waiting for kube-controller-manager, kube-scheduler and kwok")
        controller_manager.wait_healthy(
            lambda: http_ok(f"https://127.0.0.1:{cm_port}/healthz", insecure=True), 90
        )
        scheduler.wait_healthy(
            lambda: http_ok(f"https://127.0.0.1:{scheduler_port}/healthz", insecure=True), 90
        )
        self.kubectl("apply", "-f", "-", input_text=json.dumps(_fake_node_manifest()))
        kwok.wait_healthy(lambda: self._node_ready(FAKE_NODE_NAME), 90)
        self._spawn(
            "volume-provisioner",
            [
                sys.executable,
                "-m",
                "boundary_devstack.provisioner",
                "--kubectl",
                self._bin("kubectl"),
                "--kubeconfig",
                str(kubeconfig),
            ],
        )
        # Pods need the namespace's default ServiceAccount, made by the controller-manager.
        kwok.wait_healthy(
            lambda: bool(self.kubectl("get", "serviceaccount", "default", "-o", "name")), 60
        )

    def _node_ready(self, name: str) -> bool:
        out = self.kubectl(
            "get",
            "node",
            name,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        )
        return out.strip() == "True"


def _fake_node_manifest() -> dict[str, object]:
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": FAKE_NODE_NAME,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/hostname": FAKE_NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {"allocatable": resources, "capacity": resources},
    }


def _boundary_ready(api_addr: str) -> bool:
    """The admin can log in and the dev worker has reported in (a session authorized before
    that would find no worker)."""
    login = http_json(
        f"{api_addr}/v1/auth-methods/{DEV_AUTH_METHOD_ID}:authenticate",
        {
            "command": "login",
            "attributes": {"login_name": DEV_LOGIN_NAME, "password": DEV_PASSWORD},
        },
        timeout=5,
    )
    token = login["attributes"]["token"]
    workers = http_json(f"{api_addr}/v1/workers?scope_id=global", token=token, timeout=5)
    return any(worker.get("last_status_time") for worker in workers.get("items") or [])


@contextmanager
def running_stack(bin_dir: Path, progress: bool = False) -> Iterator[tuple[LocalStack, StackEnv]]:
    stack = LocalStack(bin_dir=bin_dir)
    try:
        env = stack.start(progress=progress)
        yield stack, env
    finally:
        stack.stop()


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.5) -> bool:
    """Poll predicate until it is truthy; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


__all__ = ["ComponentError", "LocalStack", "StackEnv", "running_stack", "wait_for"]
