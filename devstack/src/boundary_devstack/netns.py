"""Test hosts in network namespaces this process creates: a namespace owning one address (a
Service's cluster IP, say), joined to the host by a veth pair, so traffic to that address
reaches a real server in the namespace and never leaves the machine."""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass, field


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@dataclass
class NamespaceHost:
    address: str
    """The address the namespace owns, reachable from the host."""
    host_side: str = "10.96.254.1"
    name: str = field(default_factory=lambda: f"bk-{uuid.uuid4().hex[:8]}")

    def __post_init__(self) -> None:
        suffix = self.name[-8:]
        self.host_veth, self.ns_veth = f"bkh{suffix}", f"bkn{suffix}"

    def create(self) -> NamespaceHost:
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.host_veth, "type", "veth", "peer", "name", self.ns_veth)
            _ip("link", "set", self.ns_veth, "netns", self.name)
            _ip("addr", "add", f"{self.host_side}/32", "dev", self.host_veth)
            _ip("link", "set", self.host_veth, "up")
            _ip("route", "add", f"{self.address}/32", "dev", self.host_veth, "src", self.host_side)
            inside = ["netns", "exec", self.name, "ip"]
            _ip(*inside, "link", "set", "lo", "up")
            _ip(*inside, "addr", "add", f"{self.address}/32", "dev", self.ns_veth)
            _ip(*inside, "link", "set", self.ns_veth, "up")
            _ip(*inside, "route", "add", f"{self.host_side}/32", "dev", self.ns_veth)
        except BaseException:
            self.delete()
            raise
        return self

    def popen(self, argv: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_veth], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)
