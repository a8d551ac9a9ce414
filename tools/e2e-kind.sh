#!/usr/bin/env bash
# The install journey on a real cluster: a kind cluster, both images built from
# images/Containerfile and loaded into it, the chart installed with the operator image, and
# examples/ applied (the worker, the two Services and their backends, a Kubernetes access),
# until the worker and the access are Ready and both Services are published. A user runs it as
# it is; the project's tests (tests/kind) run the same script, giving it the offline node image
# and base images they built.
#
#   tools/e2e-kind.sh up      create (or reuse) the cluster and install everything
#   tools/e2e-kind.sh down    delete the cluster
#
# Needs docker (or podman as `docker`), kind, helm and kubectl, and a Boundary controller the
# kind nodes can reach: BOUNDARY_ADDR (API), BOUNDARY_CLUSTER_ADDR (cluster listener, host:port),
# BOUNDARY_AUTH_METHOD_ID, BOUNDARY_LOGIN_NAME, BOUNDARY_PASSWORD, BOUNDARY_PROJECT_ID.
# Optional:
#   KIND_CLUSTER       cluster name (boundary-k8s)
#   KIND_NODE_IMAGE    node image (kind's default for its release)
#   IMAGE_BUILD_ARGS   extra `docker build` arguments, e.g. "--build-arg BASE_IMAGE=..."
#   WEB_IMAGE DB_IMAGE the example backends (docker.io/library/nginx:1.27, .../postgres:17)
#   WORKER_NODE_PORT   the node port that publishes the example worker's proxy (30920)
#   WORKER_RUN_AS_USER a UID for the worker pods instead of the image's (as OpenShift assigns)
#   KIND HELM KUBECTL  the programs (from PATH, or $STACK_BIN for helm and kubectl)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cluster=${KIND_CLUSTER:-boundary-k8s}
kind=${KIND:-kind}
helm=${HELM:-$(command -v helm || echo "${STACK_BIN:-$repo/.stack/bin}/helm")}
kubectl=${KUBECTL:-$(command -v kubectl || echo "${STACK_BIN:-$repo/.stack/bin}/kubectl")}
context=kind-$cluster
tag=e2e-kind
node_port=${WORKER_NODE_PORT:-30920}
export WEB_IMAGE=${WEB_IMAGE:-docker.io/library/nginx:1.27}
export DB_IMAGE=${DB_IMAGE:-docker.io/library/postgres:17}

say() { echo "e2e-kind [$((SECONDS - ${start:-0})) s]: $*" >&2; }
k() { "$kubectl" --context "$context" "$@"; }

need() {
  local missing=() program
  for program in docker "$kind" "$helm" "$kubectl"; do
    command -v "$program" >/dev/null || missing+=("$program")
  done
  if ((${#missing[@]})); then
    say "not found: ${missing[*]} (this needs a container engine, kind, helm and kubectl)"
    exit 2
  fi
}

down() {
  need
  "$kind" delete cluster --name "$cluster"
}

up() {
  need
  local variable
  for variable in BOUNDARY_ADDR BOUNDARY_CLUSTER_ADDR BOUNDARY_AUTH_METHOD_ID \
    BOUNDARY_LOGIN_NAME BOUNDARY_PASSWORD BOUNDARY_PROJECT_ID; do
    if [[ -z ${!variable:-} ]]; then
      say "set $variable (a controller the kind nodes can reach)"
      exit 2
    fi
  done

  start=$SECONDS
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  if ! "$kind" get clusters | grep -qx "$cluster"; then
    say "creating cluster $cluster${KIND_NODE_IMAGE:+ from $KIND_NODE_IMAGE}"
    "$kind" create cluster --name "$cluster" ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} \
      --wait 180s
  fi
  say "cluster ready after $((SECONDS - start)) s"

  local target build_args
  read -r -a build_args <<<"${IMAGE_BUILD_ARGS:-}"
  for target in worker operator; do
    say "building boundary-k8s/$target:$tag"
    docker build --quiet -f "$repo/images/Containerfile" --target "$target" \
      "${build_args[@]}" -t "boundary-k8s/$target:$tag" "$repo" >/dev/null
    "$kind" load docker-image --name "$cluster" "boundary-k8s/$target:$tag"
    # The image this build replaced under the tag is left untagged (about 165 MB of its own
    # for the operator, per change of the sources). Only such leftovers of this target go:
    # the untagged build stages are the builder's cache for the next build.
    docker image prune --force --filter "label=org.opencontainers.image.title=boundary-$target" \
      >/dev/null
  done
  # Backend images that exist only locally (built here) are loaded; others are pulled.
  for image in "$WEB_IMAGE" "$DB_IMAGE"; do
    if docker image inspect "$image" >/dev/null 2>&1; then
      "$kind" load docker-image --name "$cluster" "$image"
    fi
  done

  say "installing the chart"
  k create namespace boundary-system --dry-run=client -o yaml | k apply -f - >/dev/null
  k -n boundary-system create secret generic boundary-operator-credentials \
    --from-literal=password="$BOUNDARY_PASSWORD" --dry-run=client -o yaml | k apply -f - >/dev/null
  "$helm" upgrade --install boundary-worker "$repo/charts/boundary-worker" \
    --kube-context "$context" -n boundary-system --wait --timeout 5m \
    --set controller.address="$BOUNDARY_ADDR" \
    --set auth.methodId="$BOUNDARY_AUTH_METHOD_ID" \
    --set auth.loginName="$BOUNDARY_LOGIN_NAME" \
    --set auth.existingSecret=boundary-operator-credentials \
    --set clusterName="$cluster" --set defaultScope="$BOUNDARY_PROJECT_ID" \
    --set image.tag="$tag" --set workerImage="boundary-k8s/worker:$tag" \
    --set image.pullPolicy=IfNotPresent >/dev/null

  say "applying examples/"
  # Clients outside the cluster reach the worker through a node port of the kind node: the
  # example worker is patched for that before it is first applied.
  local node_ip worker_patch example
  node_ip=$(k get nodes -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}')
  local run_as=""
  if [[ -n ${WORKER_RUN_AS_USER:-} ]]; then
    run_as=", \"podTemplate\": {\"securityContext\": {\"runAsUser\": $WORKER_RUN_AS_USER}}"
  fi
  worker_patch="{\"spec\": {\"service\": {\"type\": \"NodePort\", \"nodePort\": $node_port},
    \"publicAddress\": \"$node_ip:$node_port\"$run_as}}"
  for example in "$repo"/examples/*.yaml; do
    # shellcheck disable=SC2016 # envsubst's list of the variables it may replace
    envsubst '${BOUNDARY_CLUSTER_ADDR} ${WEB_IMAGE} ${DB_IMAGE}' <"$example" >"$work/example.yaml"
    if [[ $(basename "$example") == 10-worker.yaml ]]; then
      k patch --local --type merge -p "$worker_patch" -f "$work/example.yaml" -o yaml \
        >"$work/patched.yaml"
      mv "$work/patched.yaml" "$work/example.yaml"
    fi
    k apply -f "$work/example.yaml" >/dev/null
  done

  k -n demo wait --for=condition=Ready boundarypkiworker/edge --timeout=300s >/dev/null
  k -n demo wait --for=condition=Ready boundarykubernetesaccess/viewers --timeout=120s >/dev/null
  k -n demo rollout status deployment/web deployment/db --timeout=300s >/dev/null
  local service
  for service in web db; do
    for _ in $(seq 60); do
      k -n demo get service "$service" \
        -o jsonpath='{.metadata.annotations.boundaryproject\.io/targets}' | grep -q . && break
      sleep 2
    done
    say "service demo/$service: $(k -n demo get service "$service" \
      -o jsonpath='{.metadata.annotations.boundaryproject\.io/targets}')"
  done
  say "the chart, both images and the examples work on kind (worker at $node_ip:$node_port)"
}

case ${1:-up} in
  up) up ;;
  down) down ;;
  *)
    echo "usage: $0 [up|down]" >&2
    exit 2
    ;;
esac
