"""Kubernetes operator for HashiCorp Boundary workers and targets."""
