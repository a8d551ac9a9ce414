// Prints a string constant of a Go source file (our own tool, standard library only).
module github.com/boundary-k8s/tools/kind/goconst

go 1.25.0
