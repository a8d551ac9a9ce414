"""kopf's Event queue in a test, for calling handlers directly as the running operator would."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import kopf
from kopf._core.engines import posting


@contextlib.contextmanager
def kopf_events() -> Iterator[asyncio.Queue[posting.K8sEvent]]:
    """kopf's Event queue, as the running operator sets it up (in the test's own task)."""
    queue: asyncio.Queue[posting.K8sEvent] = asyncio.Queue()
    tokens = (
        posting.event_queue_var.set(queue),
        posting.event_queue_loop_var.set(asyncio.get_running_loop()),
        posting.settings_var.set(kopf.OperatorSettings()),
    )
    try:
        yield queue
    finally:
        posting.settings_var.reset(tokens[2])
        posting.event_queue_loop_var.reset(tokens[1])
        posting.event_queue_var.reset(tokens[0])
