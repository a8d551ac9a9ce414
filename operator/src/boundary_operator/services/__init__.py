"""Kubernetes Services published as Boundary targets with aliases and brokered credentials."""
