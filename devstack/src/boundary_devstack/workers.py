"""A real `boundary server` worker process, configured the way a PKI worker is."""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from boundary_devstack.net import free_port, http_json
from boundary_devstack.process import ManagedProcess


def worker_hcl(
    *,
    proxy_addr: str,
    ops_addr: str,
    upstreams: list[str],
    auth_storage: Path,
    token_env: str,
    tags: dict[str, list[str]],
) -> str:
    upstream_list = ", ".join(f'"{u}"' for u in upstreams)
    tag_lines = "\n".join(
        f"    {key} = [{', '.join(chr(34) + v + chr(34) for v in values)}]"
        for key, values in sorted(tags.items())
    )
    return f"""disable_mlock = true

listener "tcp" {{
  address = "{proxy_addr}"
  purpose = "proxy"
}}

listener "tcp" {{
  address = "{ops_addr}"
  purpose = "ops"
  tls_disable = true
}}

worker {{
  public_addr = "{proxy_addr}"
  initial_upstreams = [{upstream_list}]
  auth_storage_path = "{auth_storage}"
  controller_generated_activation_token = "env://{token_env}"
  tags {{
{tag_lines}
  }}
}}
"""


@dataclass
class WorkerProcess:
    boundary_bin: Path
    directory: Path
    upstream: str
    activation_token: str = field(repr=False)
    tags: dict[str, list[str]] = field(default_factory=lambda: {"type": ["devstack"]})
    host: str = "127.0.0.1"
    supervisor: Path | None = None
    """Run `boundary server` under this boundary-worker-supervisor (images/worker-supervisor),
    watching worker.hcl, as the worker image runs it."""
    drain_timeout: str = "5m"
    """The supervisor's -drain-timeout."""

    def __post_init__(self) -> None:
        self.proxy_port = free_port(self.host)
        self.ops_port = free_port(self.host)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config = self.directory / "worker.hcl"
        self.write_config()
        server = [str(self.boundary_bin), "server", f"-config={self.config}"]
        if self.supervisor is not None:
            server = [
                str(self.supervisor),
                f"-watch={self.config}",
                "-poll=500ms",
                f"-drain-timeout={self.drain_timeout}",
                "--",
                *server,
            ]
        self.process = ManagedProcess(
            "boundary-worker",
            server,
            log_path=self.directory / "worker.log",
            env={**os.environ, "WORKER_ACTIVATION_TOKEN": self.activation_token},
        )

    def write_config(self) -> None:
        """worker.hcl with the current `tags`, replaced in one rename: the way the kubelet swaps
        a ConfigMap volume's files, so a reader sees the old file or the new one."""
        text = worker_hcl(
            proxy_addr=f"{self.host}:{self.proxy_port}",
            ops_addr=f"{self.host}:{self.ops_port}",
            upstreams=[self.upstream],
            auth_storage=self.directory / "auth",
            token_env="WORKER_ACTIVATION_TOKEN",  # noqa: S106 - a variable name
            tags=self.tags,
        )
        staged = self.config.with_suffix(".new")
        staged.write_text(text)
        staged.replace(self.config)

    def start(self, timeout: float = 60) -> None:
        self.process.start()
        self.process.wait_healthy(self.upstream_ready, timeout)

    def upstream_ready(self) -> bool:
        url = f"http://{self.host}:{self.ops_port}/health?worker_info=true"
        info = http_json(url)
        assert isinstance(info, dict)
        state = info.get("worker_process_info", {}).get("upstream_connection_state")
        return bool(state == "READY")

    def metrics(self) -> str:
        """The worker's Prometheus metrics, from its ops listener."""
        url = f"http://{self.host}:{self.ops_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            return str(answer.read().decode())

    def stop(self) -> None:
        self.process.stop()
