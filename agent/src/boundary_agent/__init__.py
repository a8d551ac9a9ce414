"""Linux client agent: Boundary alias DNS and transparent sessions."""

import sys

# httpx imports its command-line client (click, pygments: about 4 MiB of the agent's RSS)
# whenever click happens to be installed, and drops it again when rich is not. The agent never
# runs that client: an empty entry makes httpx skip it at once.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

VERSION = "boundary-agent 0.1.0"
