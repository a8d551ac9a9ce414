#!/usr/bin/env bash
# Makes the project's Python environment (.venv) from uv.lock, with a pinned uv installed from
# PyPI into $BK_CACHE/uv (the Makefile puts its bin/ first on PATH). `pip --target` leaves the
# system's Python untouched, and works where PEP 668 forbids installing into it (Debian 12).
set -euo pipefail
UV_VERSION=0.13.8
uv_dir=${BK_CACHE:-$HOME/.cache/boundary-k8s}/uv
if [[ $("$uv_dir/bin/uv" --version 2>/dev/null | cut -d' ' -f2) != "$UV_VERSION" ]]; then
  rm -rf "$uv_dir"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
    --target "$uv_dir" "uv==$UV_VERSION"
fi
"$uv_dir/bin/uv" sync --frozen --quiet
