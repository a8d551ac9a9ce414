"""A real dnsmasq, the upstream resolver and the DNS baseline in tests and benches."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from boundary_devstack.process import ManagedProcess


def dnsmasq_process(
    name: str,
    *,
    host: str,
    port: int,
    log_path: Path,
    addresses: Mapping[str, str],
    servers: Mapping[str, str] | None = None,
    cache_size: int | None = None,
) -> ManagedProcess:
    """dnsmasq on host:port answering `addresses` (domain -> IPv4) itself, sending `servers`
    domains to the given upstream ("ip#port"), and nothing else: it reads neither /etc/hosts
    nor /etc/resolv.conf, so no test query leaves the machine."""
    argv = [
        "dnsmasq",
        "--no-daemon",
        "--port",
        str(port),
        "--listen-address",
        host,
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        *(f"--address=/{domain}/{ip}" for domain, ip in addresses.items()),
        *(f"--server=/{domain}/{upstream}" for domain, upstream in (servers or {}).items()),
    ]
    if cache_size is not None:
        argv.append(f"--cache-size={cache_size}")
    return ManagedProcess(name, argv, log_path=log_path)
