#!/usr/bin/env bash
# `make e2e-kind`: the install journey on a real cluster with a container runtime. Creates a kind
# cluster, builds both images from images/Containerfile, loads them into the cluster, installs
# the chart with the operator image, applies examples/, and waits for the example worker to be
# Ready and the example Services to be published.
#
# It needs Docker (or podman as `docker`), kind, and a Boundary controller that the kind nodes
# can reach, given as BOUNDARY_ADDR, BOUNDARY_CLUSTER_ADDR, BOUNDARY_AUTH_METHOD_ID,
# BOUNDARY_LOGIN_NAME, BOUNDARY_PASSWORD (and BOUNDARY_PROJECT_ID for the examples' Services).
# It has never run on the project's development machines: they have no container engine.
set -euo pipefail

missing=()
for program in docker kind; do
  command -v "$program" >/dev/null || missing+=("$program")
done
if ((${#missing[@]})); then
  echo "e2e-kind: ${missing[*]} not found. This target needs a container engine and kind;" >&2
  echo "the development machines have neither, so it cannot run here (see README)." >&2
  exit 2
fi
for variable in BOUNDARY_ADDR BOUNDARY_CLUSTER_ADDR BOUNDARY_AUTH_METHOD_ID \
  BOUNDARY_LOGIN_NAME BOUNDARY_PASSWORD BOUNDARY_PROJECT_ID; do
  if [[ -z "${!variable:-}" ]]; then
    echo "e2e-kind: set $variable (a controller the kind nodes can reach)" >&2
    exit 2
  fi
done

cluster=${KIND_CLUSTER:-boundary-k8s}
helm=${HELM:-${STACK_BIN:-.stack/bin}/helm}
kubectl=${KUBECTL:-${STACK_BIN:-.stack/bin}/kubectl}
tag=e2e-kind

kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster"
for target in worker operator; do
  docker build -f images/Containerfile --target "$target" -t "boundary-k8s/$target:$tag" .
  kind load docker-image --name "$cluster" "boundary-k8s/$target:$tag"
done

"$kubectl" create namespace boundary-system --dry-run=client -o yaml | "$kubectl" apply -f -
"$kubectl" -n boundary-system create secret generic boundary-operator-credentials \
  --from-literal=password="$BOUNDARY_PASSWORD" --dry-run=client -o yaml | "$kubectl" apply -f -
"$helm" upgrade --install boundary-worker charts/boundary-worker -n boundary-system --wait \
  --set controller.address="$BOUNDARY_ADDR" \
  --set auth.methodId="$BOUNDARY_AUTH_METHOD_ID" \
  --set auth.loginName="$BOUNDARY_LOGIN_NAME" \
  --set auth.existingSecret=boundary-operator-credentials \
  --set clusterName=kind --set defaultScope="$BOUNDARY_PROJECT_ID" \
  --set image.tag="$tag" --set workerImage="boundary-k8s/worker:$tag" \
  --set image.pullPolicy=Never

for example in examples/*.yaml; do
  sed "s|\${BOUNDARY_CLUSTER_ADDR}|$BOUNDARY_CLUSTER_ADDR|g" "$example" | "$kubectl" apply -f -
done
"$kubectl" -n demo wait --for=condition=Ready boundarypkiworker/edge --timeout=300s
for service in $("$kubectl" -n demo get services -o name); do
  "$kubectl" -n demo get "$service" -o jsonpath='{.metadata.name}: {.metadata.annotations.boundaryproject\.io/targets}{"\n"}'
done
echo "e2e-kind: the chart, both images and the examples work on kind"
