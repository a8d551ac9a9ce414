#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo use, only when one is missing.
set -euo pipefail
packages=(
  postgresql     # PostgreSQL server for `boundary dev -database-url`, and psql
  dnsutils       # dig
  iproute2       # ip netns, veth, addresses for the pod runner and DNS tests
  dnsmasq-base   # a real upstream resolver and the DNS baseline
  curl           # a real HTTP client
  procps         # ps, pgrep
  util-linux     # runuser, unshare
  file           # checks that no binary is committed
  dnsperf        # DNS load for the agent benchmark
)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
((${#missing[@]})) || exit 0
echo "installing Debian packages: ${missing[*]}" >&2
sudo=()
[[ $(id -u) == 0 ]] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
