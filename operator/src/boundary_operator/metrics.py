"""Prometheus metrics, served on BOUNDARY_OPERATOR_METRICS_PORT (0: off). Counters, and one
gauge: what a platform team alerts on is failing syncs, a Boundary call rate that runs away, and
replicas none (or more than one) of which leads."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, start_http_server

BOUNDARY_REQUESTS = Counter(
    "boundary_operator_boundary_requests",
    "HTTP attempts to the Boundary controller, retries included; code 0 means no answer.",
    ["method", "code"],
)
KUBE_REQUESTS = Counter(
    "boundary_operator_kube_requests",
    "HTTP requests of the operator's own client to the apiserver (kopf's watches and status "
    "patches not included); code 0 means no answer.",
    ["method", "code"],
)
LEASE_REQUESTS = Counter(
    "boundary_operator_lease_requests",
    "HTTP requests to the apiserver for the leader election Lease: the election's steady "
    "heartbeat (a renewal every quarter of the Lease duration), kept out of "
    "boundary_operator_kube_requests so that those count only what operating writes.",
    ["method", "code"],
)
RECONCILES = Counter(
    "boundary_operator_reconciles",
    "Reconciles of BoundaryPKIWorkers and Services, by outcome.",
    ["kind", "result"],
)


LEADER = Gauge(
    "boundary_operator_leader",
    "1 while this replica holds the leader election Lease (or runs without election), else 0.",
)


def count_boundary_attempt(method: str, status: int) -> None:
    BOUNDARY_REQUESTS.labels(method=method, code=str(status)).inc()


def count_kube_request(method: str, status: int, path: str) -> None:
    counter = LEASE_REQUESTS if "/leases" in path else KUBE_REQUESTS
    counter.labels(method=method, code=str(status)).inc()


def count_reconcile(kind: str, ok: bool) -> None:
    RECONCILES.labels(kind=kind, result="ok" if ok else "error").inc()


def serve(port: int) -> None:
    """Serve /metrics from a daemon thread (the asyncio loop stays free of it)."""
    if port:
        start_http_server(port)
