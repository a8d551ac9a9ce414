"""The agent's configuration: an HCL file (parsed with pyhcl) with the official Client Agent's
fields plus ours. An invalid file fails with the field named, before anything starts."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal

import hcl  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
UNIQUE_LOCAL_V6 = ipaddress.IPv6Network("fc00::/7")


class ConfigError(Exception):
    """The configuration is invalid; the message names each bad field."""


def _duration(value: object) -> object:
    """Accept seconds as a number or Go-style durations ("60s", "2m", "500ms")."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
            if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
                return float(text[: -len(suffix)]) * scale
        raise ValueError(f"{value!r} is not a duration (like 60s, 2m, 500ms)")
    return value


def join_host_port(host: str, port: int) -> str:
    """host:port, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _host_port(value: str, default_port: int) -> tuple[str, int]:
    text = value.strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
        return host, int(port or default_port)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, default_port


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The official Client Agent's fields.
    alias_refresh_interval: float = 60.0
    dns_request_timeout: float = 10.0
    interface_to_use: str = ""
    """Put handed-out addresses on this (dummy) interface; empty: loopback (for 127/8)."""
    log_file: str = ""
    """Append the log to this file; empty: no file."""
    log_level: Literal["trace", "debug", "info", "warn", "error"] = "info"
    log_to_stdout: bool = True
    """Log to stdout too (the only place when log_file is empty)."""
    override_upstream_dns_servers: list[str] = Field(default_factory=list)
    state_file: str = "/run/boundary-agent/state.json"
    v4_prefix: str = "100.64.0.0/10"
    """Empty: no A answers (then v6_prefix must be set)."""
    # Ours.
    v6_prefix: str = ""
    """An IPv6 unique local prefix: alias names also get AAAA answers from it. Empty: none."""
    dns_listen_addresses: list[str] = Field(default_factory=lambda: ["0.0.0.0:53", "[::]:53"])
    control_listen_port: int = Field(default=9300, ge=1, le=65535)
    """The control API's port on 127.0.0.1 and [::1]."""
    resolver_mode: Literal["resolved", "resolv.conf", "none"] = "none"
    resolver_domains: list[str] = Field(default_factory=list)
    """With resolver_mode "resolved": route only these domains to the agent."""
    auto_pause_failures: int = Field(default=5, ge=1)
    """Consecutive controller failures after which the agent pauses itself."""
    boundary_addr: str = ""
    """Controller address used by `boundary-agent login` and when a token arrives alone."""
    login_store: str = "/var/lib/boundary-agent/logins"
    """Where logins are kept across restarts (see logins.py); empty: in memory only."""
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    """uvloop (libuv's loop: 10-15 us less per forwarded DNS query in make bench) or Python's
    own asyncio. Read at start only: a reload does not change it."""

    _dur = field_validator("alias_refresh_interval", "dns_request_timeout", mode="before")(
        _duration
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: object) -> object:
        # The official documentation writes log_level = "DEBUG".
        return value.lower() if isinstance(value, str) else value

    @field_validator("alias_refresh_interval", "dns_request_timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than zero")
        return value

    @field_validator("v4_prefix")
    @classmethod
    def _v4_prefix(cls, value: str) -> str:
        if value:
            network = ipaddress.ip_network(value, strict=True)
            if network.version != 4 or not 8 <= network.prefixlen <= 16:
                raise ValueError("must be an IPv4 prefix between /8 and /16")
        return value

    @field_validator("v6_prefix")
    @classmethod
    def _v6_prefix(cls, value: str) -> str:
        if value:
            network = ipaddress.ip_network(value, strict=True)
            # At least 256 addresses; only unique local ones, which never route to the internet.
            if not (
                isinstance(network, ipaddress.IPv6Network)
                and network.subnet_of(UNIQUE_LOCAL_V6)
                and network.prefixlen <= 120
            ):
                raise ValueError(
                    "must be an IPv6 unique local prefix (inside fc00::/7), /120 or wider"
                )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AgentConfig:
        if not self.v4_prefix and not self.v6_prefix:
            raise ValueError("v4_prefix and v6_prefix are both empty: set at least one")
        if not self.log_to_stdout and not self.log_file:
            raise ValueError("log_to_stdout is false and log_file is empty: nothing would log")
        if self.resolver_mode == "resolved" and self.interface_to_use in ("", "lo"):
            # systemd-resolved answers "Link lo is loopback device." to any DNS setting on lo.
            raise ValueError(
                'resolver_mode "resolved" needs interface_to_use set to a non-loopback interface '
                "(systemd-resolved refuses per-link DNS on loopback)"
            )
        return self

    @field_validator("override_upstream_dns_servers", "dns_listen_addresses")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        for value in values:
            host, port = _host_port(value, 53)
            ipaddress.ip_address(host)
            if not 0 < port < 65536:
                raise ValueError(f"{value!r}: port out of range")
        return values

    @property
    def loopback_mode(self) -> bool:
        """Addresses from a v4 prefix inside 127/8, and no v6 prefix, need no privilege: Linux
        routes all of 127/8 to loopback. IPv6 has no such range (only ::1), so a v6 prefix's
        addresses are always added to the interface, which needs CAP_NET_ADMIN."""
        return not self.v6_prefix and needs_no_address(self.v4_prefix)

    def upstreams(self) -> list[tuple[str, int]]:
        return [_host_port(v, 53) for v in self.override_upstream_dns_servers]

    def listen_addresses(self) -> list[tuple[str, int]]:
        return [_host_port(v, 53) for v in self.dns_listen_addresses]


def needs_no_address(prefix_or_address: str) -> bool:
    """Whether the kernel already delivers to it locally: anything inside 127.0.0.0/8."""
    network = ipaddress.ip_network(prefix_or_address)
    return isinstance(network, ipaddress.IPv4Network) and network.subnet_of(LOOPBACK_V4)


def parse_config(text: str, source: str = "config") -> AgentConfig:
    try:
        raw: dict[str, Any] = hcl.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ConfigError(f"{source}: not valid HCL: {exc}") from exc
    try:
        return AgentConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ConfigError(f"{source}: invalid configuration: {problems}") from None


def load_config(path: Path | None) -> AgentConfig:
    if path is None:
        return AgentConfig()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_config(text, str(path))
