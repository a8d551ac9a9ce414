#!/usr/bin/env bash
# Builds the real programs the tests run (Boundary, the Kubernetes control plane, etcd, kwok,
# helm) from the Go module proxy through the pinned wrapper modules in tools/go/*, and links them
# into one folder ($STACK_BIN).
#
# Each binary lands in $BK_CACHE/bin/<name>-<key>, where <key> hashes the wrapper's go.mod,
# go.sum and the build flags: a warm cache rebuilds nothing, and a version bump builds afresh.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${BK_CACHE:-$HOME/.cache/boundary-k8s}
stack_bin=${STACK_BIN:-$repo/.stack/bin}

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
export GOMODCACHE=$cache/go/mod GOCACHE=$cache/go/build
# The go.sum files are committed, so checksums are verified against them; the checksum database
# is not needed (and, behind the proxy used here, it does not know every module we pin).
export GOSUMDB=off

BOUNDARY_VERSION=0.21.1
KUBE_VERSION=v1.34.4
HELM_VERSION=v3.19.4
KWOK_VERSION=v0.7.0

kube_ldflags() {
  local flags="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=34"
    flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "-s -w$flags"
}

# build NAME WRAPPER LDFLAGS PACKAGE... : builds the packages of one wrapper module into one
# cache folder (one `go build` so shared packages compile once) and links them into $LINK_DIR
# ($stack_bin unless set). A single PACKAGE may be written BINARY=PACKAGE to name the binary.
# GOOS, CGO_ENABLED and BUILD_TAGS may be set for one build; they are part of its cache key.
build() {
  local name=$1 wrapper=$here/go/$2 ldflags=$3 link_dir=${LINK_DIR:-$stack_bin}
  shift 3
  local key
  key=$(cat "$wrapper/go.mod" "$wrapper/go.sum" <(echo "$ldflags $*" "$(go env GOVERSION)" \
    ${GOOS:+"GOOS=$GOOS"} "CGO_ENABLED=$CGO_ENABLED" ${BUILD_TAGS:+"tags=$BUILD_TAGS"}) |
    sha256sum | cut -c1-16)
  local out=$cache/bin/$name-$key
  if [[ ! -f $out/.complete ]]; then
    echo "building $name ($key) ..." >&2
    local start=$SECONDS
    rm -rf "$out" && mkdir -p "$out"
    local target=$out/
    if [[ $# == 1 && $1 == *=* ]]; then
      target=$out/${1%%=*}
      set -- "${1#*=}"
    fi
    (cd "$wrapper" && go build -trimpath ${BUILD_TAGS:+-tags "$BUILD_TAGS"} -ldflags "$ldflags" -o "$target" "$@")
    touch "$out/.complete"
    echo "built $name in $((SECONDS - start)) s" >&2
  fi
  mkdir -p "$link_dir"
  local bin
  for bin in "$out"/*; do
    ln -sfn "$bin" "$link_dir/$(basename "$bin")"
  done
}

build boundary boundary \
  "-s -w -X github.com/hashicorp/boundary/version.Version=$BOUNDARY_VERSION" \
  github.com/hashicorp/boundary/cmd/boundary
# The same Boundary CLI for Windows: its client-agent commands exist only in the macOS and
# Windows builds, so the agent's compatibility test runs this one under Wine.
GOOS=windows build boundary-windows boundary \
  "-s -w -X github.com/hashicorp/boundary/version.Version=$BOUNDARY_VERSION" \
  boundary.exe=github.com/hashicorp/boundary/cmd/boundary
build kube kube "$(kube_ldflags)" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
build etcd etcd "-s -w" etcd=go.etcd.io/etcd/server/v3
build kwok kwok \
  "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$KUBE_VERSION" \
  sigs.k8s.io/kwok/cmd/kwok
build helm helm \
  "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=34 \
-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=34" \
  helm.sh/helm/v3/cmd/helm

# ---------------------------------------------------------------------------------------------
# kind, and what its node image holds (tools/kind/build-node-image.sh puts them together). The
# versions are kind v0.30.0's: its base image's containerd, runc and CNI plugins, and for
# Kubernetes v1.34 what kubeadm deploys (etcd above, CoreDNS), local-path-provisioner from its
# default storage manifest. crictl is v1.34.0 because v1.33.0 is not served by the module proxy.
# kind v0.30.0 and CoreDNS v1.12.1 carry their versions in their sources.
CONTAINERD_VERSION=v2.1.4
RUNC_VERSION=v1.3.0
CRICTL_VERSION=v1.34.0
CNI_PLUGINS_VERSION=v1.7.1
LOCAL_PATH_PROVISIONER_VERSION=v0.0.30
build kind kind "-s -w" sigs.k8s.io/kind

node_bin=$stack_bin/kind-node
export LINK_DIR=$node_bin
build kube-node kube "$(kube_ldflags)" \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kube-proxy
BUILD_TAGS="no_aufs no_zfs no_btrfs no_devmapper" build containerd containerd \
  "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
  github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/ctr \
  github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
# runc links libseccomp (Debian's libseccomp-dev here, libseccomp2 in the node), as kind builds it.
CGO_ENABLED=1 BUILD_TAGS=seccomp build runc runc "-s -w -X main.version=${RUNC_VERSION#v}" \
  github.com/opencontainers/runc
build crictl crictl "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION" \
  sigs.k8s.io/cri-tools/cmd/crictl
build cni-plugins cni-plugins \
  "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" \
  github.com/containernetworking/plugins/plugins/ipam/host-local \
  github.com/containernetworking/plugins/plugins/main/loopback \
  github.com/containernetworking/plugins/plugins/main/ptp \
  github.com/containernetworking/plugins/plugins/meta/portmap
build coredns coredns "-s -w" github.com/coredns/coredns
build local-path-provisioner local-path-provisioner \
  "-s -w -X main.VERSION=$LOCAL_PATH_PROVISIONER_VERSION" github.com/rancher/local-path-provisioner
unset LINK_DIR
