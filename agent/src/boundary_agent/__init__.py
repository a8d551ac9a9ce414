"""Linux client agent: Boundary alias DNS and transparent sessions."""

VERSION = "boundary-agent 0.1.0"
