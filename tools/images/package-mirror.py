#!/usr/bin/env python3
"""Builds a small local package mirror for image builds on a machine whose containers cannot
reach the package registries over TLS (this project's CI sandbox intercepts TLS with its own
certificate authority, which only the host trusts).

    package-mirror.py DIR

fills DIR with what images/Containerfile's build stages download, fetched on the host:
  DIR/simple/  a PEP 503 index (PIP_INDEX_URL) of the operator's and the agent's locked
               dependencies (exact versions and hashes from uv.lock, via `uv export`), uv
               itself, and hatchling, the build backend of the workspace packages (the agent's
               install test, tests/kind/laptop.py, builds them with pip as the README says);
  DIR/go/      a GOPROXY view of the project's Go module cache ($GOMODCACHE, else
               $BK_CACHE/go/mod, where tools/build-go-tools.sh downloads): cache/download.
Serve DIR over plain HTTP on the project's Docker bridge and pass the two URLs as build
arguments; the Containerfile runs the same commands as against pypi.org and proxy.golang.org.
Run it with a Python that has pip (the machine's; the project's virtualenv has none).
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UV_VERSION = "0.13.8"  # tools/install-python.sh and images/Containerfile pin the same
BUILD_BACKEND = "hatchling>=1.27"  # the workspace packages' [build-system] requires
PACKAGES = ("boundary-operator", "boundary-agent")
"""The workspace packages whose locked dependencies the mirror serves."""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def project_of(filename: str) -> str:
    """The project a wheel or sdist file belongs to (the text before its version)."""
    if filename.endswith(".whl"):
        return normalize(filename.split("-")[0])
    stem = re.sub(r"\.(tar\.gz|zip)$", "", filename)
    return normalize(stem.rsplit("-", 1)[0])


def download(directory: Path) -> None:
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(directory)]
    for package in PACKAGES:
        requirements = subprocess.run(
            [
                "uv",
                "export",
                "--frozen",
                "--no-dev",
                "--package",
                package,
                "--no-emit-workspace",
                "--format",
                "requirements-txt",
            ],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as locked:
            locked.write(requirements)
            locked.flush()
            subprocess.run([*pip, "--no-deps", "--require-hashes", "-r", locked.name], check=True)
    subprocess.run([*pip, f"uv=={UV_VERSION}", BUILD_BACKEND], check=True)


def write_index(files: Path, simple: Path) -> None:
    projects: dict[str, list[Path]] = {}
    for path in sorted(files.iterdir()):
        projects.setdefault(project_of(path.name), []).append(path)
    simple.mkdir(parents=True, exist_ok=True)
    links = []
    for project, paths in sorted(projects.items()):
        anchors = []
        for path in paths:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            name = html.escape(path.name)
            anchors.append(f'<a href="../../files/{name}#sha256={digest}">{name}</a><br>')
        (simple / project).mkdir(exist_ok=True)
        (simple / project / "index.html").write_text(
            "<!DOCTYPE html><html><body>\n" + "\n".join(anchors) + "\n</body></html>\n"
        )
        links.append(f'<a href="{project}/">{project}</a><br>')
    (simple / "index.html").write_text(
        "<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n"
    )


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    mirror = Path(sys.argv[1])
    files = mirror / "files"
    if not (mirror / "simple" / "index.html").exists():
        files.mkdir(parents=True, exist_ok=True)
        download(files)
        write_index(files, mirror / "simple")
    cache = Path(os.environ.get("BK_CACHE") or Path.home() / ".cache" / "boundary-k8s")
    gomodcache = Path(os.environ.get("GOMODCACHE") or cache / "go" / "mod")
    go = mirror / "go"
    go.unlink(missing_ok=True)
    go.symlink_to(gomodcache / "cache" / "download")
    return 0


if __name__ == "__main__":
    sys.exit(main())
