"""Linux client agent: Boundary alias DNS and transparent sessions."""
