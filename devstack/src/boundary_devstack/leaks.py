"""What a leaked Boundary secret looks like, for the tests that search logs and artifacts for
one."""

from __future__ import annotations

import re
from pathlib import Path

TOKEN_SHAPES = re.compile(r"\bat_[0-9A-Za-z]{10}_[0-9A-Za-z]{8,}|\bneslat_[0-9A-Za-z]{8,}")
"""Auth tokens are at_<10 characters>_<secret>; controller-led activation tokens neslat_..."""


def token_shaped(text: str) -> list[str]:
    """The token-shaped strings in text, cut short so that a failure message leaks nothing."""
    return [f"{m.group(0)[:10]}..." for m in TOKEN_SHAPES.finditer(text)]


def files_holding(directory: Path, secret: str) -> list[str]:
    """Every file under directory whose bytes hold the secret, or anything token-shaped."""
    found = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if secret.encode() in data or token_shaped(data.decode("latin-1")):
            found.append(str(path.relative_to(directory)))
    return found
