// A small stand-in for kind's kindnetd (our own code, standard library only).
module github.com/boundary-k8s/tools/kind/kindnetd

go 1.25.0
