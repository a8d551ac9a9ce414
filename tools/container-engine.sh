#!/usr/bin/env bash
# The project's own Docker engine, for building images and running kind.
#
#   container-engine.sh start   start it unless it already answers; prints nothing else
#   container-engine.sh stop    stop it (the images stay in its data root, under the cache)
#   container-engine.sh host    print its DOCKER_HOST
#   container-engine.sh address print the host's address on its bridge (reachable from
#                               containers and kind nodes; where test servers for them listen)
#
# It never touches another dockerd: its socket, pid file, exec root, data root (under
# $BK_CACHE) and bridge (bk-docker0, 172.29.255.0/24) are its own, and networks it creates come
# from 172.29.0.0/17. Its default runtime is tools/docker/runc-without-sys-resource, which
# works around this machine's missing CAP_SYS_RESOURCE (see that file).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${BK_CACHE:-$HOME/.cache/boundary-k8s}
state=$cache/docker
run=/run/boundary-k8s-docker
socket=$run/docker.sock
bridge=bk-docker0
bridge_address=172.29.255.1/24
export DOCKER_HOST=unix://$socket

answers() { [[ -S $socket ]] && timeout 5 docker version >/dev/null 2>&1; }

close_inherited_descriptors() {
  local path fd
  for path in "/proc/$BASHPID/fd"/*; do
    fd=${path##*/}
    if ((fd > 2)); then eval "exec $fd>&-"; fi
  done
}

start() {
  answers && return 0
  command -v dockerd >/dev/null || { echo "container-engine: dockerd not found (make tools installs docker.io)" >&2; exit 2; }
  sudo=()
  [[ $(id -u) == 0 ]] || sudo=(sudo)
  mkdir -p "$state/bin" "$state/data"
  "${sudo[@]}" mkdir -p "$run"
  # A copy in the cache, not the checkout: a later checkout may reuse this dockerd.
  install -m 0755 "$here/docker/runc-without-sys-resource" "$state/bin/runc-without-sys-resource"
  cat >"$state/daemon.json" <<JSON
{
  "runtimes": {"runc-without-sys-resource": {"path": "$state/bin/runc-without-sys-resource"}},
  "default-runtime": "runc-without-sys-resource",
  "bridge": "$bridge",
  "default-address-pools": [{"base": "172.29.0.0/17", "size": 24}],
  "storage-driver": "overlay2",
  "features": {"buildkit": false}
}
JSON
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    "${sudo[@]}" ip link add "$bridge" type bridge
    "${sudo[@]}" ip addr add "$bridge_address" dev "$bridge"
  fi
  "${sudo[@]}" ip link set "$bridge" up
  # Bridged traffic must pass iptables for the NAT and isolation rules dockerd installs.
  "${sudo[@]}" modprobe br_netfilter 2>/dev/null || true
  "${sudo[@]}" sysctl -qw net.ipv4.ip_forward=1
  # dockerd outlives this script: it must not inherit the caller's descriptors (a lock file
  # held open by `flock` would stay locked for as long as dockerd runs).
  (
    close_inherited_descriptors
    "${sudo[@]}" sh -c "exec dockerd --config-file '$state/daemon.json' --data-root '$state/data' \
      --exec-root '$run/exec' --pidfile '$run/dockerd.pid' --host 'unix://$socket' \
      </dev/null >>'$state/dockerd.log' 2>&1 &"
  )
  for _ in $(seq 60); do
    answers && return 0
    sleep 1
  done
  echo "container-engine: dockerd did not answer within 60 s; its log:" >&2
  tail -20 "$state/dockerd.log" >&2
  exit 1
}

stop() {
  [[ -f $run/dockerd.pid ]] || return 0
  local pid
  pid=$(cat "$run/dockerd.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 60); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 1
  done
  echo "container-engine: dockerd ($pid) did not stop within 60 s" >&2
  exit 1
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  host) echo "$DOCKER_HOST" ;;
  address) echo "${bridge_address%/*}" ;;
  *) echo "usage: $0 start|stop|host|address" >&2; exit 2 ;;
esac
