"""`boundary-operator run`: the operator in the foreground, against the current KUBECONFIG (or
the in-cluster service account). Every flag has an environment variable twin."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

import kopf

from boundary_operator.drain import drain
from boundary_operator.kube import KubeClient, KubeCredentials, KubeError, default_credentials
from boundary_operator.metrics import serve as serve_metrics
from boundary_operator.runtime import Runtime, set_runtime
from boundary_operator.settings import OperatorSettings

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
}
# Secrets are taken only from the environment (BOUNDARY_PASSWORD, BOUNDARY_TOKEN): a flag would
# show in the process list.


def _register_handlers() -> None:
    # Importing registers the handlers with kopf.
    from boundary_operator.services import handlers as service_handlers  # noqa: F401
    from boundary_operator.workers import handlers as worker_handlers  # noqa: F401


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    credentials: KubeCredentials = default_credentials()
    return kopf.ConnectionInfo(
        server=credentials.server,
        ca_path=credentials.ca_file,
        certificate_path=credentials.client_cert,
        private_key_path=credentials.client_key,
        token=credentials.token,
        insecure=credentials.insecure,
    )


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
    settings.watching.server_timeout = 300
    set_runtime(Runtime(OperatorSettings(), KubeClient(default_credentials())))


@kopf.on.cleanup()
async def close(**_: Any) -> None:
    from boundary_operator.runtime import get_runtime

    await get_runtime().aclose()
    set_runtime(None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="boundary-operator")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator in the foreground")
    for flag, env in FLAGS.items():
        run.add_argument(flag, dest=env, help=f"(env {env})")
    run.add_argument("--verbose", action="store_true")
    drain_parser = sub.add_parser(
        "drain",
        help="delete every watched BoundaryPKIWorker and wait until the operator tore it down",
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
        print(f"boundary-operator: invalid configuration: {exc}", file=sys.stderr)
        return 2
    _register_handlers()
    serve_metrics(settings.metrics_port)
    namespaces = settings.namespaces
    liveness = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    asyncio.run(
        kopf.operator(
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            liveness_endpoint=liveness,
        )
    )
    return 0


def _drain(namespaces: list[str], timeout: float) -> int:
    async def run() -> list[str]:
        kube = KubeClient(default_credentials())
        try:
            return await drain(kube, namespaces, timeout=timeout)
        finally:
            await kube.aclose()

    where = ", ".join(namespaces) or "every namespace"
    try:
        remaining = asyncio.run(run())
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
    print(f"boundary-operator drain: no BoundaryPKIWorker left in {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
