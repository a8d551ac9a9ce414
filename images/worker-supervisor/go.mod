// The worker image's process supervisor (our own code, standard library only).
module github.com/boundary-k8s/images/worker-supervisor

go 1.25.0
