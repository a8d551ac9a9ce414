"""What a leaked token looks like, for tests that grep logs and artifacts for one."""

from __future__ import annotations

import re

TOKEN_SHAPES = re.compile(r"\bat_[0-9A-Za-z]{10}_[0-9A-Za-z]{8,}|\bneslat_[0-9A-Za-z]{8,}")
"""Boundary auth tokens (at_<10 characters>_<secret>) and controller-led activation tokens
(neslat_...)."""


def token_like(text: str) -> list[str]:
    """The token-shaped strings in `text`, cut short so a failure message does not leak them."""
    return [match.group()[:12] + "..." for match in TOKEN_SHAPES.finditer(text)]
