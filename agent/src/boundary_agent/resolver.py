"""Making the system use the agent: systemd-resolved split DNS, or /etc/resolv.conf takeover
with a backup restored on exit (and on the next start after a crash), or nothing."""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from boundary_agent.config import AgentConfig, join_host_port
from boundary_agent.dns import system_upstreams

log = logging.getLogger("boundary_agent.resolver")
RESOLV_CONF = Path("/etc/resolv.conf")
RESOLVED_UPSTREAMS = Path("/run/systemd/resolve/resolv.conf")
"""systemd-resolved's own upstream servers. /etc/resolv.conf names its stub (127.0.0.53)
instead, which would send the alias domains straight back to the agent."""
RESOLVECTL_TIMEOUT = 5.0
"""Seconds a resolvectl call may take (resolved answers in milliseconds; this bounds a hang)."""


def forward_upstreams(
    config: AgentConfig,
    resolv_conf: Path = RESOLV_CONF,
    resolved_upstreams: Path = RESOLVED_UPSTREAMS,
) -> list[tuple[str, int]]:
    """Where the agent forwards the names it does not answer: override_upstream_dns_servers,
    else the system's resolvers (resolved's upstreams in mode "resolved"), never the agent's
    own DNS addresses."""
    if config.override_upstream_dns_servers:
        return config.upstreams()
    source = resolved_upstreams if config.resolver_mode == "resolved" else resolv_conf
    return system_upstreams(source, exclude={host for host, _ in config.listen_addresses()})


@dataclass
class ResolverIntegration:
    config: AgentConfig
    resolv_conf: Path = RESOLV_CONF

    @property
    def backup(self) -> Path:
        return Path(self.config.state_file).with_name("resolv.conf.before-boundary-agent")

    def install(self, bound: list[tuple[str, int]]) -> None:
        """Point the system at the DNS addresses the agent listens on, (host, port) pairs."""
        mode = self.config.resolver_mode
        if mode == "resolv.conf":
            self._restore_stale_backup()
            self.backup.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.resolv_conf, self.backup)
            servers = [
                "127.0.0.1" if host == "0.0.0.0" else "::1" if host == "::" else host  # noqa: S104
                for host, _ in bound
            ]
            text = "# Written by boundary-agent; the original is restored on exit.\n"
            text += "".join(f"nameserver {s}\n" for s in dict.fromkeys(servers))
            self.resolv_conf.write_text(text)
        elif mode == "resolved":
            link = self.config.interface_to_use
            server = resolvectl_server(*bound[0])
            domains = [f"~{d}" for d in self.config.resolver_domains] or ["~."]
            for argv in (
                ["resolvectl", "dns", link, server],
                ["resolvectl", "domain", link, *domains],
                ["resolvectl", "default-route", link, "false"],
            ):
                subprocess.run(argv, check=True, capture_output=True)

    def _restore_stale_backup(self) -> None:
        """A backup left by a crashed run is the real original: put it back first."""
        if self.backup.exists():
            log.warning("restoring %s from a previous run's backup", self.resolv_conf)
            shutil.copy2(self.backup, self.resolv_conf)

    def flush_caches(self) -> None:
        """Mode resolved: drop resolved's cache when the agent's answers change (aliases come or
        go, a pause, a resume). Names asked before a login or while paused were forwarded, and
        resolved keeps an NXDOMAIN for as long as the answer's SOA says (up to two hours), so
        the aliases would stay unresolved after the login or the resume. Runs resolvectl
        in-line: it is quick, and these changes are rare."""
        if self.config.resolver_mode != "resolved":
            return
        try:
            subprocess.run(
                ["resolvectl", "flush-caches"],
                check=True,
                capture_output=True,
                timeout=RESOLVECTL_TIMEOUT,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("cannot flush systemd-resolved's cache: %s", exc)

    def restore(self) -> None:
        mode = self.config.resolver_mode
        if mode == "resolv.conf" and self.backup.exists():
            shutil.copy2(self.backup, self.resolv_conf)
            self.backup.unlink()
        elif mode == "resolved":
            link = self.config.interface_to_use
            subprocess.run(["resolvectl", "revert", link], check=False, capture_output=True)


def resolvectl_server(host: str, port: int) -> str:
    """A DNS address as resolvectl takes it: the bare address on port 53, else ADDRESS:PORT or
    [ADDRESS]:PORT (systemd 246 and later)."""
    return host if port == 53 else join_host_port(host, port)
