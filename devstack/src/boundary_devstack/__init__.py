"""The real local stack (Boundary, Kubernetes control plane) for tests and demos."""
