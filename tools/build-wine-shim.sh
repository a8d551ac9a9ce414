#!/usr/bin/env bash
# Builds tools/wine/bcryptprimitives.dll (see its source for why) with the Debian MinGW
# compiler into $BK_CACHE, keyed by its source, and links it into $STACK_BIN.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${BK_CACHE:-$HOME/.cache/boundary-k8s}
stack_bin=${STACK_BIN:-$repo/.stack/bin}

key=$(cat "$here/wine/bcryptprimitives.c" "$here/wine/bcryptprimitives.def" | sha256sum | cut -c1-16)
out=$cache/wine/bcryptprimitives-$key.dll
if [[ ! -f $out ]]; then
  mkdir -p "$(dirname "$out")"
  x86_64-w64-mingw32-gcc -O2 -shared -o "$out.tmp" \
    "$here/wine/bcryptprimitives.c" "$here/wine/bcryptprimitives.def" -ladvapi32
  mv "$out.tmp" "$out"
fi
mkdir -p "$stack_bin"
ln -sfn "$out" "$stack_bin/bcryptprimitives.dll"
