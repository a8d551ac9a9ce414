"""`boundary-operator run`: the operator in the foreground, against the current KUBECONFIG (or
the in-cluster service account). Every flag has an environment variable twin."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import signal
import sys
from typing import Any

import kopf

from boundary_operator.drain import drain
from boundary_operator.health import serve_health
from boundary_operator.kube import (
    FIELD_MANAGER,
    Credentials,
    KubeClient,
    KubeConfigError,
    KubeError,
    default_source,
)
from boundary_operator.leader import LeaseElector, LeaseTiming, lead_or_stand_by
from boundary_operator.metrics import LEADER
from boundary_operator.metrics import serve as serve_metrics
from boundary_operator.naming import WORKER_POD_LABELS, label_selector
from boundary_operator.runtime import Runtime
from boundary_operator.settings import OperatorSettings

log = logging.getLogger("boundary_operator")

# Flag -> environment variable.
FLAGS = {
    "--boundary-addr": "BOUNDARY_ADDR",
    "--boundary-cacert": "BOUNDARY_CACERT",
    "--auth-method-id": "BOUNDARY_AUTH_METHOD_ID",
    "--login-name": "BOUNDARY_LOGIN_NAME",
    "--cluster-name": "BOUNDARY_OPERATOR_CLUSTER_NAME",
    "--namespaces": "BOUNDARY_OPERATOR_NAMESPACES",
    "--worker-image": "BOUNDARY_OPERATOR_WORKER_IMAGE",
    "--cluster-domain": "BOUNDARY_OPERATOR_CLUSTER_DOMAIN",
    "--default-scope": "BOUNDARY_OPERATOR_DEFAULT_SCOPE",
    "--alias-template": "BOUNDARY_OPERATOR_ALIAS_TEMPLATE",
    "--target-address": "BOUNDARY_OPERATOR_TARGET_ADDRESS",
    "--resync-seconds": "BOUNDARY_OPERATOR_RESYNC_SECONDS",
    "--metrics-port": "BOUNDARY_OPERATOR_METRICS_PORT",
    "--health-port": "BOUNDARY_OPERATOR_HEALTH_PORT",
    "--leader-election-lease": "BOUNDARY_OPERATOR_LEADER_ELECTION_LEASE",
    "--lease-seconds": "BOUNDARY_OPERATOR_LEASE_SECONDS",
    "--kube-api-address": "BOUNDARY_OPERATOR_KUBE_API_ADDRESS",
    "--kube-api-server-name": "BOUNDARY_OPERATOR_KUBE_API_SERVER_NAME",
}
# Secrets are taken only from the environment (BOUNDARY_PASSWORD, BOUNDARY_TOKEN): a flag would
# show in the process list.


def _register_handlers() -> None:
    # Importing registers the handlers with kopf.
    from boundary_operator.kubeaccess import handlers as kube_access_handlers  # noqa: F401
    from boundary_operator.services import handlers as service_handlers  # noqa: F401
    from boundary_operator.workers import handlers as worker_handlers  # noqa: F401


LOGIN_MARGIN = datetime.timedelta(seconds=60)
"""Log in again this long before the token expires (less for tokens shorter-lived than 10x)."""


@kopf.on.login()
async def login(memo: Runtime, **_: Any) -> kopf.ConnectionInfo:
    """kopf's own connection, from the same live credentials as the operator's client: the
    same kubeconfig, exec plugin or service account, renewed the same way."""
    if memo.kube_credentials is None:
        raise kopf.PermanentError("the operator runs without Kubernetes credentials")
    credentials = await memo.kube_credentials()
    # kopf asks at start, near the expiration we gave it, and after a 401: fetch afresh
    # unless the token in hand is known to be good for a while.
    expiration = credentials.expiration
    now = datetime.datetime.now(datetime.UTC)
    await credentials.refresh(force=expiration is None or expiration - now <= LOGIN_MARGIN)
    return connection_info(credentials)


def connection_info(credentials: Credentials) -> kopf.ConnectionInfo:
    config = credentials.configuration
    expiration = credentials.expiration
    now = datetime.datetime.now(datetime.UTC)
    if expiration is not None and expiration <= now:
        expiration = None  # a stale token file: let a 401 bring kopf back, not a login loop
    if expiration is not None:
        expiration -= min(LOGIN_MARGIN, (expiration - now) / 10)
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
        scheme="Bearer" if credentials.token else None,
        token=credentials.token,
        expiration=expiration,
    )


WATCH_SERVER_TIMEOUT = 300  # whole seconds: the apiserver refuses "300.0"
"""The apiserver ends each watch after this long; kopf then starts the next one."""


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = "workers.boundaryproject.io/teardown"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix="workers.boundaryproject.io"
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="workers.boundaryproject.io", key="last-handled-configuration"
    )
    settings.posting.level = logging.INFO
    # Events say who posted them (`kubectl describe`'s From column): this operator, not "kopf".
    settings.posting.reporting_component = FIELD_MANAGER
    settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
    # A watch whose apiserver vanished without closing it (a dropped connection) is given up
    # a little after the server would have ended it, not left hanging forever.
    settings.watching.client_timeout = WATCH_SERVER_TIMEOUT + 30
    settings.watching.connect_timeout = 10
    # The pod watch (workers/handlers.py) asks the apiserver for worker pods only.
    settings.watching.label_selectors["v1", "pods"] = label_selector(WORKER_POD_LABELS)
    settings.networking.connect_timeout = 10
    settings.networking.request_timeout = 60


@kopf.on.cleanup()
async def close(memo: Runtime, **_: Any) -> None:
    await memo.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="boundary-operator")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator in the foreground")
    for flag, env in FLAGS.items():
        run.add_argument(flag, dest=env, help=f"(env {env})")
    run.add_argument("--verbose", action="store_true")
    drain_parser = sub.add_parser(
        "drain",
        help="delete every watched BoundaryPKIWorker and BoundaryKubernetesAccess and wait "
        "until the operator tore them down",
    )
    drain_parser.add_argument(
        "--namespaces", default="", help="comma-separated; empty: every namespace"
    )
    drain_parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait")
    args = parser.parse_args(argv)
    if args.command == "drain":
        return _drain([n for n in args.namespaces.split(",") if n], args.timeout)
    for env in FLAGS.values():
        value = getattr(args, env)
        if value is not None:
            os.environ[env] = value
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per HTTP call drowns what matters; errors still surface as exceptions.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = OperatorSettings()
    except ValueError as exc:
        return _fail(f"invalid configuration: {' '.join(str(exc).split())}", code=2)
    if not settings.boundary_addr:
        return _fail("no controller address: set BOUNDARY_ADDR (or --boundary-addr)", code=2)
    try:
        asyncio.run(_run(settings))
    except KubeConfigError as exc:
        return _fail(str(exc))
    return 0


def _fail(message: str, code: int = 1) -> int:
    print(f"boundary-operator: {message}", file=sys.stderr)
    return code


async def _run(settings: OperatorSettings) -> None:
    """Check the Kubernetes configuration first (a bad one ends the run with one line, not a
    traceback or kopf's login retries), then run kopf with the runtime as its memo: at once, or,
    with leader election, while this replica holds the Lease."""
    kube = KubeClient(default_source())
    try:
        credentials = await kube.credentials()
        try:
            log.info("authenticated to the apiserver as %s", await kube.whoami())
        except KubeError as exc:
            # Down for now: kopf retries, as after any apiserver outage.
            log.warning("cannot check the Kubernetes credentials yet: %s", exc)
    except BaseException:
        await kube.aclose()
        raise
    log.info("Kubernetes credentials from %s", credentials.source.describe())
    _register_handlers()
    serve_metrics(settings.metrics_port)
    elector = _elector(settings, kube)
    health = await serve_health(
        settings.health_port,
        lambda: "leader" if elector is None or elector.leading else "standby",
    )

    async def operate(stop: asyncio.Event | None) -> None:
        namespaces = settings.namespaces
        # A runtime (views, logins, locks) per term as leader: nothing carries over from an
        # earlier one, as after a restart.
        await kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            stop_flag=stop,
            memo=Runtime(settings, KubeClient(credentials), kube_credentials=kube.credentials),
        )

    try:
        if elector is None:
            LEADER.set(1)
            await operate(None)
        else:
            stopping = asyncio.Event()
            await lead_or_stand_by(
                elector, operate, stopping, on_standby=lambda: _stop_on_signals(stopping)
            )
    finally:
        if health is not None:
            await health.cleanup()
        await kube.aclose()


def _elector(settings: OperatorSettings, kube: KubeClient) -> LeaseElector | None:
    if not settings.leader_election_lease:
        return None
    namespace, name = settings.leader_election_lease.split("/")
    return LeaseElector(
        kube, namespace, name, settings.identity, LeaseTiming(settings.lease_seconds)
    )


def _stop_on_signals(stopping: asyncio.Event) -> None:
    """SIGINT and SIGTERM end a standby. kopf puts its own handlers in while it runs."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)


def _drain(namespaces: list[str], timeout: float) -> int:
    # SIGTERM (a Job's pod deleted) unwinds like Ctrl-C, so the private directory goes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    async def run() -> list[str]:
        kube = KubeClient(default_source())
        try:
            await kube.whoami()
            return await drain(kube, namespaces, timeout=timeout)
        finally:
            await kube.aclose()

    where = ", ".join(namespaces) or "every namespace"
    try:
        remaining = asyncio.run(run())
    except KubeConfigError as exc:
        print(f"boundary-operator drain: {exc}", file=sys.stderr)
        return 1
    except KubeError as exc:
        print(f"boundary-operator drain: {exc}", file=sys.stderr)
        return 1
    if remaining:
        print(
            f"boundary-operator drain: still present after {timeout:.0f} s: "
            f"{', '.join(remaining)}; is the operator running? (kubectl describe shows their "
            "Events)",
            file=sys.stderr,
        )
        return 1
    print(
        f"boundary-operator drain: no BoundaryPKIWorker or BoundaryKubernetesAccess left in {where}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
