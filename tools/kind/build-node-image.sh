#!/usr/bin/env bash
# Builds, offline, the kind node image for the pinned Kubernetes: the image `kind create
# cluster` would otherwise pull. Prints its name.
#
# Inputs: the binaries tools/build-go-tools.sh built into $STACK_BIN (and $STACK_BIN/kind-node),
# kind's own files from the kind module in the Go module cache, and Debian packages. Every
# image is tagged with a key of its inputs, so a warm run finds them and builds nothing.
# Needs the project's dockerd (tools/container-engine.sh start) and mmdebstrap.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${BK_CACHE:-$HOME/.cache/boundary-k8s}
stack_bin=${STACK_BIN:-$repo/.stack/bin}
node_bin=$stack_bin/kind-node
export DOCKER_HOST=${DOCKER_HOST:-$("$repo/tools/container-engine.sh" host)} DOCKER_BUILDKIT=0
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build

KUBE_VERSION=v1.34.4
KIND_VERSION=v0.30.0
kind_module=$GOMODCACHE/sigs.k8s.io/kind@$KIND_VERSION
# The sandbox image kind's containerd config names, and what kubeadm v1.34.4 deploys.
PAUSE_IMAGE=registry.k8s.io/pause:3.10
ETCD_IMAGE=registry.k8s.io/etcd:3.6.5-0
COREDNS_IMAGE=registry.k8s.io/coredns/coredns:v1.12.1

key() { sha256sum | cut -c1-16; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
log() { echo "build-node-image: $*" >&2; }

# The Debian base the images build on (tools/images/offline-bases.sh).
base=$("$repo/tools/images/offline-bases.sh" | sed -n 's/^base=//p')

# Our own small programs: pause (C, static) and kindnetd (Go, standard library only).
own_build() { # NAME SOURCE_DIR COMMAND... (run in SOURCE_DIR with $out set)
  local name=$1 source=$2
  shift 2
  local out
  out=$cache/bin/$name-$(cat "$source"/* <(echo "$*" "$(go env GOVERSION)" "$(gcc -dumpversion)") | key)
  if [[ ! -f $out/.complete ]]; then
    rm -rf "$out" && mkdir -p "$out"
    (cd "$source" && out=$out bash -c "$*")
    touch "$out/.complete"
  fi
  echo "$out/$name"
}
# shellcheck disable=SC2016 # $out is expanded by own_build's shell
pause=$(own_build pause "$here/pause" 'gcc -static -Os -Wall -Wextra -Werror -o "$out/pause" pause.c')
# shellcheck disable=SC2016
kindnetd=$(own_build kindnetd "$here/kindnetd" \
  'CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/kindnetd" .')

# Everything the node image is made of, by path (the cache paths carry the build keys).
component_paths=(
  "$stack_bin/kube-apiserver" "$stack_bin/kube-controller-manager" "$stack_bin/kube-scheduler"
  "$stack_bin/kubectl" "$stack_bin/etcd" "$node_bin/kubeadm" "$node_bin/kubelet"
  "$node_bin/kube-proxy" "$node_bin/coredns" "$node_bin/local-path-provisioner"
  "$node_bin/containerd" "$node_bin/ctr" "$node_bin/containerd-shim-runc-v2" "$node_bin/runc"
  "$node_bin/crictl" "$node_bin/host-local" "$node_bin/loopback" "$node_bin/ptp"
  "$node_bin/portmap" "$pause" "$kindnetd"
)
node_key=$( (
  for path in "${component_paths[@]}"; do readlink -f "$path"; done
  cat "$here"/*.Containerfile "$here/iptables-mode" "$here/containerd-oom-score-adj" "$0"
  echo "$base $KIND_VERSION"
) | key)
node=boundary-k8s/kind-node:$KUBE_VERSION-$node_key
if have_image "$node"; then
  echo "$node"
  exit 0
fi

context=$(mktemp -d "$cache/kind-build.XXXXXX")
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/bin"
for path in "${component_paths[@]}"; do cp -L "$path" "$context/bin/"; done
cp "$here/iptables-mode" "$here/containerd-oom-score-adj" "$context/"

# The preloaded images, named as kubeadm and kind's manifests expect; ours by our own names.
declare -A images=(
  [kube-apiserver]=registry.k8s.io/kube-apiserver:$KUBE_VERSION
  [kube-controller-manager]=registry.k8s.io/kube-controller-manager:$KUBE_VERSION
  [kube-scheduler]=registry.k8s.io/kube-scheduler:$KUBE_VERSION
  [kube-proxy]=registry.k8s.io/kube-proxy:$KUBE_VERSION
  [etcd]=$ETCD_IMAGE
  [coredns]=$COREDNS_IMAGE
  [pause]=$PAUSE_IMAGE
  [kindnetd]=boundary-k8s/kindnetd:$node_key
  [local-path-provisioner]=boundary-k8s/local-path-provisioner:v0.0.30-$node_key
  [local-path-helper]=boundary-k8s/local-path-helper:$node_key
)
for target in "${!images[@]}"; do
  log "image ${images[$target]}"
  docker build --quiet --file "$here/images.Containerfile" --target "$target" \
    --build-arg "BASE_IMAGE=$base" --tag "${images[$target]}" "$context" >/dev/null
done

# kind's base image, with kind's files from the module cache.
kind_base=boundary-k8s/kind-base:$KIND_VERSION-$node_key
log "image $kind_base"
cp -r "$kind_module/images/base/files" "$context/files"
chmod -R u+w "$context/files"
docker build --quiet --file "$here/base.Containerfile" --build-arg "BASE_IMAGE=$base" \
  --tag "$kind_base" "$context" >/dev/null

# kind's default CNI and storage manifests, read out of the kind module's source, with our
# images in place of the three kind publishes itself.
mkdir -p "$context/manifests"
goconst() { (cd "$here/goconst" && go run . "$kind_module/pkg/build/nodeimage/$1" "$2"); }
goconst const_cni.go defaultCNIManifest |
  sed -E "s#docker.io/kindest/kindnetd:[^\" ]+#${images[kindnetd]}#g" >"$context/manifests/default-cni.yaml"
goconst const_storage.go defaultStorageManifest |
  sed -E -e "s#docker.io/kindest/local-path-provisioner:[^\" ]+#${images[local-path-provisioner]}#g" \
    -e "s#docker.io/kindest/local-path-helper:[^\" ]+#${images[local-path-helper]}#g" \
    >"$context/manifests/default-storage.yaml"
if grep -n 'docker.io/kindest' "$context"/manifests/*.yaml; then
  log "kind's manifests name an image this build does not make"
  exit 1
fi

echo "$KUBE_VERSION" >"$context/version"
log "saving ${#images[@]} images for the node"
docker save --output "$context/images.tar" "${images[@]}"
log "image $node"
docker build --quiet --file "$here/node.Containerfile" --build-arg "BASE_IMAGE=$kind_base" \
  --tag "$node" "$context" >/dev/null
# The engine is the project's own: superseded node images (about 2 GB each) and the layers
# nothing refers to any more go, or the data root grows with every change of input.
for stale in $(docker images --format '{{.Repository}}:{{.Tag}}' boundary-k8s/kind-node) \
  $(docker images --format '{{.Repository}}:{{.Tag}}' boundary-k8s/kind-base); do
  [[ $stale == "$node" || $stale == "$kind_base" ]] || docker rmi "$stale" >/dev/null 2>&1 || true
done
docker image prune --force >/dev/null
echo "$node"
