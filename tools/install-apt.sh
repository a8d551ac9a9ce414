#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo use, only when one is missing.
set -euo pipefail
packages=(
  python3-pip    # fetches the pinned uv from PyPI
  postgresql     # PostgreSQL server for `boundary dev -database-url`, and psql
  dnsutils       # dig
  iproute2       # ip netns, veth, addresses for the pod runner and DNS tests
  dnsmasq-base   # a real upstream resolver and the DNS baseline
  curl           # a real HTTP client
  procps         # ps, pgrep
  util-linux     # runuser, unshare
  file           # checks that no binary is committed
  dnsperf        # DNS load for the agent benchmark
  systemd        # libsystemd-shared, which the unpacked systemd-resolved below links against
  dbus-daemon    # a private system bus for that systemd-resolved
  socat          # carries the controller's port into a test's network namespace
  wine64         # runs the official boundary CLI's Windows build (its client-agent commands)
  gcc-mingw-w64-x86-64-win32  # builds the one DLL that Wine 8.0 lacks (tools/wine)
  docker.io      # the project's own dockerd (tools/container-engine.sh): images and kind
  mmdebstrap     # Debian base images, where no image registry is reachable
  libseccomp-dev # runc for the kind node image links libseccomp
  gettext-base   # envsubst, for tools/e2e-kind.sh
  chromium       # a real browser, headless: web pages against the agent's control API
)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
sudo=()
[[ $(id -u) == 0 ]] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}" >&2
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# systemd-resolved for the agent's "resolved" mode test. It is unpacked, never installed:
# installing it would point this machine's /etc/resolv.conf at its stub. The test runs it in a
# network and mount namespace of its own. Its version must be the installed systemd's.
cache=${BK_CACHE:-$HOME/.cache/boundary-k8s}
stack_bin=${STACK_BIN:-$(cd "$(dirname "$0")/.." && pwd)/.stack/bin}
version=$(dpkg-query -W -f='${Version}' systemd)
resolved=$cache/deb/systemd-resolved-$version
if [[ ! -x $resolved/lib/systemd/systemd-resolved ]]; then
  echo "unpacking systemd-resolved $version into $resolved" >&2
  download=$(mktemp -d)
  (cd "$download" && apt-get download -qq -o APT::Sandbox::User=root "systemd-resolved=$version")
  rm -rf "$resolved" && mkdir -p "$resolved"
  dpkg-deb -x "$download"/systemd-resolved_*.deb "$resolved"
  rm -rf "$download"
fi
mkdir -p "$stack_bin"
ln -sfn "$resolved/lib/systemd/systemd-resolved" "$stack_bin/systemd-resolved"
ln -sfn "$resolved/usr/bin/resolvectl" "$stack_bin/resolvectl"
