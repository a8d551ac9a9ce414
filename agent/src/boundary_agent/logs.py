"""Where the agent's log goes, as the official Client Agent's settings say: `log_file` (appended
to), `log_to_stdout` (stdout as well, or instead when there is no file) and `log_level`. Applied
before anything starts, and again on SIGHUP, which also reopens the file."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from boundary_agent.config import AgentConfig, ConfigError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = {
    "trace": logging.DEBUG,  # Python has no level below DEBUG
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
QUIET = {"httpx": logging.WARNING, "httpcore": logging.WARNING}
"""Libraries whose per-request lines say nothing the agent's own lines do not."""


_installed: list[logging.Handler] = []
"""The handlers configure_logging put on the root logger; a reload replaces only these."""


def configure_logging(config: AgentConfig) -> None:
    """Route every log record as the config says. Raises ConfigError naming log_file when it
    cannot be opened; the handlers in place then stay."""
    handlers: list[logging.Handler] = []
    if config.log_file:
        handlers.append(_file_handler(Path(config.log_file)))
    if config.log_to_stdout:
        handlers.append(logging.StreamHandler(sys.stdout))
    root = logging.getLogger()
    for old in _installed:
        root.removeHandler(old)
        old.close()
    _installed[:] = handlers
    formatter = logging.Formatter(FORMAT)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(LEVELS[config.log_level])
    for name, level in QUIET.items():
        logging.getLogger(name).setLevel(max(level, root.level))


def _file_handler(path: Path) -> logging.Handler:
    """Appends to path, created readable by the agent's user alone; a file moved away (by
    logrotate) is reopened at the next record."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        return logging.handlers.WatchedFileHandler(path)
    except OSError as exc:
        raise ConfigError(f"log_file: cannot open {path}: {exc.strerror}") from exc
