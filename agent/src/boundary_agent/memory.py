"""Handing memory back to the system after a burst of connections.

Each proxied connection holds a few hundred KiB while it is open (asyncio's TLS read buffer of
256 KiB, OpenSSL's records, our receive buffer). glibc's malloc serves blocks that large with
mmap at first, but raises that threshold after each such block is freed, so a burst of
connections leaves the next ones on the heap, whose freed pages glibc keeps: the agent's RSS
stayed at its high-water mark after a burst closed. Worse, much of a connection's memory was
not even freed then: asyncio's transports and protocols refer to each other, so a connection's
buffers wait for the cyclic garbage collector's oldest generation, which runs seldom. So once
the last proxied connection of a burst has closed (and once start-up is done), release() runs
the collector and then malloc_trim, which returns the heap's free pages to the system."""

from __future__ import annotations

import ctypes
import gc


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc only: not on musl
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def release() -> None:
    """Free what only cycles still hold, and return the heap's free pages to the system."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
