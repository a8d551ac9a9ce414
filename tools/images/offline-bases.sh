#!/usr/bin/env bash
# Makes, from Debian packages, the base images that images/Containerfile and the kind node
# image build on here, where no image registry is reachable, and the example backends' images.
# Prints `base=`, `python=` and `go=` lines (the images to pass for BASE_IMAGE, PYTHON_IMAGE and
# GO_IMAGE), and `nginx=` and `postgres=` (for WEB_IMAGE and DB_IMAGE). Each is tagged
# with a key of its recipe, so a warm run builds nothing. Needs the project's dockerd
# (tools/container-engine.sh start) and mmdebstrap.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export DOCKER_HOST=${DOCKER_HOST:-$("$repo/tools/container-engine.sh" host)} DOCKER_BUILDKIT=0

key() { sha256sum | cut -c1-16; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# Debian bookworm minbase with the stable updates and security suites; documentation and
# locales left out, as the slim images do.
sources=("deb http://deb.debian.org/debian bookworm main"
  "deb http://deb.debian.org/debian bookworm-updates main"
  "deb http://deb.debian.org/debian-security bookworm-security main")
excludes=(--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*')
base=boundary-k8s/debian:bookworm-$(printf '%s\n' minbase "${sources[@]}" "${excludes[@]}" | key)
if ! have_image "$base"; then
  echo "offline-bases: making $base with mmdebstrap" >&2
  # shellcheck disable=SC2016 # the hook's $1 is mmdebstrap's root directory
  mmdebstrap --quiet --variant=minbase "${excludes[@]}" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
    bookworm - "${sources[@]}" | docker import - "$base" >/dev/null
fi

recipe=$(cat "$here/offline.Containerfile" "$here/postgres-entrypoint" | key)
# offline TARGET IMAGE: builds one target of offline.Containerfile unless it exists.
offline() {
  if ! have_image "$2"; then
    echo "offline-bases: making $2" >&2
    docker build --quiet --file "$here/offline.Containerfile" --target "$1" \
      --build-arg "BASE_IMAGE=$base" --tag "$2" "$here" >/dev/null
  fi
}
suffix=bookworm-$(echo "$base $recipe" | key)
python=boundary-k8s/python:3.11-$suffix
offline python "$python"
nginx=boundary-k8s/nginx:$suffix
offline nginx "$nginx"
postgres=boundary-k8s/postgres:15-$suffix
offline postgres "$postgres"

goroot=$(go env GOROOT)
go_version=$(go env GOVERSION)
golang=boundary-k8s/golang:${go_version#go}-bookworm-$(echo "$base $recipe $goroot" | key)
if ! have_image "$golang"; then
  echo "offline-bases: making $golang from $goroot" >&2
  docker build --quiet --file "$here/offline.Containerfile" --target golang \
    --build-arg "BASE_IMAGE=$base" --tag "$golang" "$goroot" >/dev/null
fi
printf 'base=%s\npython=%s\ngo=%s\nnginx=%s\npostgres=%s\n' "$base" "$python" "$golang" "$nginx" "$postgres"
