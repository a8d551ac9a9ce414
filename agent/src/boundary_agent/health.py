"""What goes wrong, for `status`: the agent's recent errors, and its consecutive failures to reach
the controller, after which it pauses itself."""

from __future__ import annotations

import collections
import datetime
import logging
from collections.abc import Callable

log = logging.getLogger("boundary_agent")
RECENT_ERRORS = 20


class Health:
    def __init__(self, auto_pause_failures: int, pause: Callable[[str], None]) -> None:
        self.auto_pause_failures = auto_pause_failures
        """Consecutive controller failures after which `pause` is called."""
        self.errors: collections.deque[str] = collections.deque(maxlen=RECENT_ERRORS)
        self.failures = 0
        self._pause = pause

    def record_error(self, message: str, *, cause: BaseException | None = None) -> None:
        """Keep message for `status` and log it; an unexpected `cause` logs its traceback."""
        stamp = datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S")
        self.errors.appendleft(f"{stamp} {message}")
        if cause is None:
            log.warning("%s", message)
        else:
            log.error("%s", message, exc_info=cause)

    def controller_failed(self, message: str) -> None:
        self.record_error(message)
        self.failures += 1
        if self.failures >= self.auto_pause_failures:
            self._pause(f"paused after {self.failures} failures to reach the controller")

    def controller_answered(self) -> None:
        self.failures = 0
