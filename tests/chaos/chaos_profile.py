"""How hard the chaos suite pushes. `make test-chaos` sets BK_CHAOS=full and runs the sizes the
reliability issue asks for; `make test` runs the same tests in a shorter form."""

from __future__ import annotations

import os

FULL = os.environ.get("BK_CHAOS", "") == "full"


def pick(full: int, short: int) -> int:
    """The full-suite size, or the short one that `make test` uses."""
    return full if FULL else short
