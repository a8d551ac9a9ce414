"""The official boundary CLI's Windows build, run under Wine.

Boundary registers its `client-agent` commands only in its macOS and Windows builds, so this is
how a Linux machine runs the real CLI against our agent. tools/build-go-tools.sh builds
boundary.exe from the same pinned module as the Linux binary; Debian's Wine 8.0 runs it, with
one DLL it lacks built from tools/wine (see the source for why)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

WINE64 = "/usr/lib/wine/wine64"
"""Where Debian's wine64 package puts the loader (/usr/bin/wine64 comes only with `wine`)."""


def default_prefix() -> Path:
    cache = os.environ.get("BK_CACHE") or str(Path.home() / ".cache" / "boundary-k8s")
    return Path(cache) / "wine-prefix"


@dataclass
class WindowsBoundaryCli:
    bin_dir: Path
    """The stack's bin folder, holding boundary.exe and bcryptprimitives.dll."""
    prefix: Path
    """The Wine prefix (a Windows folder tree), created on first use and then reused."""

    @property
    def _env(self) -> dict[str, str]:
        return {
            "WINEPREFIX": str(self.prefix),
            "WINEDEBUG": "-all",
            # No Mono or Gecko: the CLI needs neither, and their installers want a display.
            "WINEDLLOVERRIDES": "mscoree,mshtml=",
        }

    def _ready_prefix(self) -> None:
        system32 = self.prefix / "drive_c" / "windows" / "system32"
        if not system32.exists():
            subprocess.run(
                [self._wine, "wineboot", "--init"],
                env={**os.environ, **self._env},
                capture_output=True,
                timeout=300,
                check=True,
            )
        shutil.copyfile(self.bin_dir / "bcryptprimitives.dll", system32 / "bcryptprimitives.dll")

    @property
    def _wine(self) -> str:
        return shutil.which("wine64") or WINE64

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """`boundary ARGS` (Windows build) with env (Wine passes it on to the program)."""
        executable = self.bin_dir / "boundary.exe"
        if not executable.exists():
            raise FileNotFoundError(f"{executable} is missing: run `make tools` to build it")
        self._ready_prefix()
        return subprocess.run(
            [self._wine, str(executable), *args],
            env={**(env or os.environ), **self._env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
