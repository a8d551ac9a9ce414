"""Handing memory back to the system after a burst of connections.

Each proxied connection holds a few hundred KiB while it is open (asyncio's TLS read buffer of
256 KiB, OpenSSL's records, our receive buffer). glibc's malloc serves blocks that large with
mmap at first, but raises that threshold after each such block is freed, so a burst of
connections leaves the next ones on the heap, whose freed pages glibc keeps: the agent's RSS
stayed at its high-water mark after a burst closed. Once the last proxied connection of a
burst has closed, malloc_trim returns the heap's free pages to the system."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("boundary_agent.memory")


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only: not on musl
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def trim() -> None:
    """Return the heap's free pages to the system."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
