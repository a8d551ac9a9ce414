#!/usr/bin/env bash
# Makes the project's Python environment (.venv) from uv.lock, installing uv itself from PyPI
# when it is missing.
set -euo pipefail
UV_VERSION=0.13.8
if ! command -v uv >/dev/null || [[ $(uv --version | cut -d' ' -f2) != "$UV_VERSION" ]]; then
  python3 -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
uv sync --frozen --quiet
