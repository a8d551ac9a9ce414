"""logs.configure_logging: where records go and at which level, and a reload replacing what the
last call installed. The real agent process is tests/e2e/test_agent_config.py."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from boundary_agent.config import AgentConfig, ConfigError
from boundary_agent.logs import configure_logging


@pytest.fixture
def root_logging() -> Iterator[None]:
    """The root logger as it was, afterwards (pytest's own capture handlers included)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    configure_logging(AgentConfig())  # drops whatever the test installed
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_a_file_alone_at_warn(tmp_path: Path, root_logging: None) -> None:
    log_file = tmp_path / "logs" / "agent.log"
    configure_logging(AgentConfig(log_file=str(log_file), log_to_stdout=False, log_level="warn"))
    logger = logging.getLogger("boundary_agent")
    logger.info("an info line")
    logger.warning("a warning line")
    text = log_file.read_text()
    assert "a warning line" in text
    assert "an info line" not in text
    assert log_file.stat().st_mode & 0o777 == 0o600


def test_a_reload_replaces_the_handlers_it_installed(
    tmp_path: Path, root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    configure_logging(AgentConfig(log_file=str(first), log_level="debug"))
    configure_logging(AgentConfig(log_file=str(second), log_level="info"))
    logger = logging.getLogger("boundary_agent")
    logger.debug("a debug line")
    logger.info("once")
    assert second.read_text().count("once") == 1
    assert "once" not in first.read_text()
    assert "a debug line" not in second.read_text()
    assert capsys.readouterr().out.count("once") == 1, "stdout too, once"


def test_a_log_file_that_cannot_be_opened_names_the_field(
    tmp_path: Path, root_logging: None
) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="log_file: cannot open"):
        configure_logging(AgentConfig(log_file=str(tmp_path / "file" / "agent.log")))
