// The worker image's readiness probe helper (our own code, standard library only).
module github.com/boundary-k8s/images/worker-probe

go 1.25.0
