"""Which local OS user is on the other end of a loopback TCP connection, from /proc/net/tcp:
the peer's socket is listed there with its owner's uid."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from pathlib import Path


def _hex_endpoint(text: str) -> tuple[str, int]:
    address, port = text.split(":")
    raw = bytes.fromhex(address)
    if len(raw) == 4:
        ip = str(ipaddress.IPv4Address(raw[::-1]))
    else:  # IPv6: four little-endian 32-bit words
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        ip6 = ipaddress.IPv6Address(words)
        ip = str(ip6.ipv4_mapped) if ip6.ipv4_mapped else str(ip6)
    return ip, int(port, 16)


def peer_uid(sock: socket.socket, proc: Path = Path("/proc/net")) -> int | None:
    """The uid owning the other end of `sock`, when that end is on this machine."""
    local = sock.getsockname()[:2]
    peer = sock.getpeername()[:2]
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (proc / table).read_text().splitlines()[1:]:
                fields = line.split()
                if _hex_endpoint(fields[1]) == (peer[0], peer[1]) and _hex_endpoint(fields[2]) == (
                    local[0],
                    local[1],
                ):
                    return int(fields[7])
    return None
