"""The operator's Kubernetes client, on the official `kubernetes` package's asyncio client
(`kubernetes.aio`): it reads kubeconfigs (merged KUBECONFIG lists, contexts, exec credential
plugins, token files) and the in-cluster service account, keeps the bearer token current, and
sends the requests. On top of it, just what the service layer needs (server-side apply of built
manifests, reads, deletes, merge patches, Events), with no dependency on kopf, so the sync logic
can be tested and benchmarked alone.

Why this library: it is the one the design card names, it is kept by Kubernetes itself, its
asyncio half serves an asyncio operator without threads, and it runs exec plugins (with their
expiry) and re-reads the in-cluster token file every minute, as client-go does. Where it stops
short, this module adds the rest: an exec token is renewed when it expires (the library only does
so on request), a kubeconfig `tokenFile` is re-read like the in-cluster one, and a 401 makes it
fetch fresh credentials once before giving up.

Key material the library must hand to Python's ssl module as files (client certificates and keys
given inline, or by an exec plugin) goes into one private directory (mode 0700) that is removed
when the process exits; nothing is written anywhere else."""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import datetime
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from kubernetes.aio.client.api_client import ApiClient
from kubernetes.aio.client.configuration import Configuration
from kubernetes.aio.config.config_exception import ConfigException
from kubernetes.aio.config.incluster_config import InClusterConfigLoader
from kubernetes.aio.config.kube_config import KubeConfigLoader, KubeConfigMerger

from boundary_operator.manifest import Manifest, rfc3339
from boundary_operator.metrics import count_kube_request

FIELD_MANAGER = "boundary-operator"
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_FILE_PERIOD = 60.0
"""Seconds between reads of a token file (kubelet rotates projected tokens in place)."""

# kind -> (API prefix, plural). Only the kinds the operator manages.
KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("api/v1", "configmaps"),
    "Secret": ("api/v1", "secrets"),
    "Service": ("api/v1", "services"),
    "Pod": ("api/v1", "pods"),
    "PersistentVolumeClaim": ("api/v1", "persistentvolumeclaims"),
    "Event": ("api/v1", "events"),
    "StatefulSet": ("apis/apps/v1", "statefulsets"),
    "PodDisruptionBudget": ("apis/policy/v1", "poddisruptionbudgets"),
    "BoundaryPKIWorker": ("apis/workers.boundaryproject.io/v1alpha1", "boundarypkiworkers"),
    "Lease": ("apis/coordination.k8s.io/v1", "leases"),
    "BoundaryKubernetesAccess": (
        "apis/workers.boundaryproject.io/v1alpha1",
        "boundarykubernetesaccesses",
    ),
    "ServiceAccount": ("api/v1", "serviceaccounts"),
    "RoleBinding": ("apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "ClusterRoleBinding": ("apis/rbac.authorization.k8s.io/v1", "clusterrolebindings"),
}


log = logging.getLogger("boundary_operator.kube")


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str, method: str, path: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{method} {path}: {message} ({reason} {status})")


class KubeNotFound(KubeError):
    pass


class KubeConfigError(Exception):
    """The Kubernetes configuration cannot be used. The message is one line naming the cause."""


# ---------------------------------------------------------------------- private directory

_PRIVATE_PREFIX = "boundary-operator-"
_private_dir: Path | None = None


def private_dir() -> Path:
    """The process's private directory for key material the ssl module reads from files:
    made on first use (0700, named after the process), removed at exit. A process killed
    outright cannot remove its own: the next one removes those of processes that are gone."""
    global _private_dir
    if _private_dir is None:
        _remove_orphaned_private_dirs()
        _private_dir = Path(tempfile.mkdtemp(prefix=f"{_PRIVATE_PREFIX}{os.getpid()}-"))
        atexit.register(_remove_private_dir, _private_dir)
    return _private_dir


def _remove_private_dir(directory: Path) -> None:
    global _private_dir
    shutil.rmtree(directory, ignore_errors=True)
    if _private_dir == directory:
        _private_dir = None


def _remove_orphaned_private_dirs() -> None:
    for directory in Path(tempfile.gettempdir()).glob(f"{_PRIVATE_PREFIX}*-*"):
        pid = directory.name.removeprefix(_PRIVATE_PREFIX).split("-", 1)[0]
        try:
            if not pid.isdigit() or directory.stat().st_uid != os.geteuid():
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(directory, ignore_errors=True)
        except OSError:
            continue


# ---------------------------------------------------------------------- where credentials come from


@dataclass(frozen=True)
class KubeConfigSource:
    """Where the Kubernetes credentials come from: kubeconfig files (`kubeconfig`, os.pathsep
    separated as in KUBECONFIG) or, when `in_cluster`, the pod's service account."""

    kubeconfig: str = ""
    context: str | None = None
    in_cluster: bool = False
    service_account_dir: Path = SERVICE_ACCOUNT_DIR

    def describe(self) -> str:
        if self.in_cluster:
            return f"the in-cluster service account ({self.service_account_dir})"
        context = f" (context {self.context})" if self.context else ""
        return f"kubeconfig {self.kubeconfig}{context}"

    async def load(self) -> Credentials:
        """Read the configuration and fetch the first credentials. Raises KubeConfigError."""
        if self.in_cluster:
            return _load_in_cluster(self)
        return await _load_kubeconfig(self)


def load_kubeconfig(path: str | None = None, context: str | None = None) -> KubeConfigSource:
    """The kubeconfig at `path`, else KUBECONFIG, else ~/.kube/config."""
    paths = path or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    return KubeConfigSource(kubeconfig=paths, context=context)


def in_cluster_source(service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> KubeConfigSource:
    return KubeConfigSource(in_cluster=True, service_account_dir=service_account_dir)


def default_source() -> KubeConfigSource:
    """In a pod (and without KUBECONFIG) the service account, else the kubeconfig."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        return in_cluster_source()
    return load_kubeconfig()


# ---------------------------------------------------------------------- live credentials


def _token_expiry(token: str) -> datetime.datetime | None:
    """The `exp` claim of a JWT (service account tokens are JWTs), unverified: only to know when
    to fetch a new one. None for other tokens."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        return datetime.datetime.fromtimestamp(int(claims["exp"]), datetime.UTC)
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class Credentials:
    """A library Configuration whose bearer token is kept current: `renew` is run before every
    request (through the library's refresh hook) and decides itself whether anything is due."""

    configuration: Configuration
    source: KubeConfigSource
    renew: Callable[[bool], Awaitable[None]]
    """renew(force): fetch a token if the current one is due (or at once, when forced)."""
    expiry: Callable[[], datetime.datetime | None] = lambda: None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _seen: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._settle()
        self._seen = self.token

    async def _hook(self, _: Configuration) -> None:
        await self.refresh()

    async def refresh(self, force: bool = False) -> None:
        async with self._lock:
            await self.renew(force)
            self._settle()

    def _settle(self) -> None:
        # The library keeps a token file's trailing newline, which no HTTP header may hold.
        value = self.configuration.api_key.get("BearerToken")
        if value:
            token = str(value).partition(" ")[2].strip()
            self.configuration.api_key["BearerToken"] = f"Bearer {token}"
        # The library's in-cluster loader puts its own hook back each time it runs.
        self.configuration.refresh_api_key_hook = self._hook
        if self._seen is not None and self.token != self._seen:
            expires = self.expiration
            log.info(
                "renewed the Kubernetes credentials from %s%s",
                self.source.describe(),
                f" (valid until {rfc3339(expires)})" if expires else "",
            )
        self._seen = self.token or self._seen

    @property
    def token(self) -> str | None:
        value = self.configuration.api_key.get("BearerToken")
        return str(value).partition(" ")[2] or None if value else None

    @property
    def expiration(self) -> datetime.datetime | None:
        """When the current token stops working, if known."""
        known = self.expiry()
        if known is not None:
            return known
        return _token_expiry(self.token) if self.token else None

    def __repr__(self) -> str:
        token = "set" if self.token else "unset"
        return f"Credentials({self.source.describe()}, token={token})"


def _load_in_cluster(source: KubeConfigSource) -> Credentials:
    directory = source.service_account_dir
    loader = InClusterConfigLoader(
        token_filename=str(directory / "token"), cert_filename=str(directory / "ca.crt")
    )
    configuration = Configuration()
    try:
        loader.load_and_set(configuration)
    except (ConfigException, OSError) as exc:
        raise KubeConfigError(f"{source.describe()}: {exc}") from None
    library_hook = configuration.refresh_api_key_hook

    async def renew(force: bool) -> None:
        # The library re-reads the token file once a minute; a forced renewal reads it now.
        if force:
            loader.load_and_set(configuration)
        library_hook(configuration)

    return Credentials(configuration, source, renew)


@contextlib.contextmanager
def _library_errors() -> Iterator[list[str]]:
    """What the library logs as errors while loading (it logs a failed exec plugin and goes on
    without credentials): the cause, for the one-line error."""
    errors: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                errors.append(record.getMessage())

    library_log = logging.getLogger("kubernetes.aio.config.kube_config")
    handler = Collect()
    library_log.addHandler(handler)
    try:
        yield errors
    finally:
        library_log.removeHandler(handler)


def _readable_kubeconfigs(source: KubeConfigSource) -> list[str]:
    """The files of the KUBECONFIG list that exist (others are skipped, as kubectl does); an
    existing file we cannot read is an error, and so is having none."""
    readable = []
    for path in (p for p in source.kubeconfig.split(os.pathsep) if p):
        try:
            with Path(path).expanduser().open("rb"):
                readable.append(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise KubeConfigError(f"cannot read kubeconfig {path}: {exc.strerror}") from None
    if not readable:
        raise KubeConfigError(
            f"no kubeconfig at {source.kubeconfig}: set KUBECONFIG or run in a pod"
        )
    return readable


async def _load_kubeconfig(source: KubeConfigSource) -> Credentials:
    readable = _readable_kubeconfigs(source)
    try:
        merged = KubeConfigMerger(os.pathsep.join(readable))
        loader = KubeConfigLoader(
            config_dict=merged.config,
            config_base_path=None,
            active_context=source.context,
            temp_file_path=str(private_dir()),
        )
        configuration = Configuration()
        with _library_errors() as errors:
            await loader.load_and_set(configuration)
    except (ConfigException, OSError) as exc:
        raise KubeConfigError(f"{source.describe()}: {exc}") from None
    except Exception as exc:  # a malformed file: YAML errors, missing or mistyped keys
        cause = " ".join(str(exc).split())
        raise KubeConfigError(f"{source.describe()}: {type(exc).__name__}: {cause}") from None
    user = loader._user  # the library keeps the context's user only there
    exec_plugin = user is not None and "exec" in user
    if not exec_plugin and not any(private_dir().iterdir()):
        # Nothing was inline, and nothing can come later (only an exec plugin's certificates
        # would): no directory to leave behind.
        _remove_private_dir(private_dir())
    if exec_plugin and not getattr(loader, "token", None) and not configuration.cert_file:
        command = user["exec"].safe_get("command")
        cause = "; ".join(errors) or "it returned no credentials"
        raise KubeConfigError(f"the exec credential plugin {command!r} failed: {cause}")
    token_file = (
        user.safe_get("tokenFile") if user is not None and not user.safe_get("token") else None
    )
    token_file_read = time.monotonic()

    async def renew(force: bool) -> None:
        nonlocal token_file_read
        if exec_plugin:
            if force and hasattr(loader, "exec_plugin_expiry"):
                del loader.exec_plugin_expiry
            with _library_errors() as errors:
                await loader.load_from_exec_plugin()
            if errors:
                log.warning("exec credential plugin: %s", "; ".join(errors))
            if getattr(loader, "token", None):
                configuration.api_key["BearerToken"] = loader.token
        elif token_file and (force or time.monotonic() - token_file_read >= TOKEN_FILE_PERIOD):
            token_file_read = time.monotonic()
            path = Path(loader._get_base_path(user.path)) / str(token_file)
            with contextlib.suppress(OSError):
                configuration.api_key["BearerToken"] = f"Bearer {path.read_text().strip()}"

    def expiry() -> datetime.datetime | None:
        expires: datetime.datetime | None = getattr(loader, "exec_plugin_expiry", None)
        return expires

    return Credentials(configuration, source, renew, expiry)


# ---------------------------------------------------------------------- requests


def resource_path(kind: str, namespace: str | None, name: str = "", sub: str = "") -> str:
    prefix, plural = KINDS[kind]
    path = f"/{prefix}/namespaces/{namespace}/{plural}" if namespace else f"/{prefix}/{plural}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


class KubePort(Protocol):
    """What the service layer calls on the apiserver: KubeClient, or in tests the in-memory
    boundary_devstack.fakes.FakeKube."""

    async def apply(self, manifest: Manifest, *, force: bool = True) -> Manifest: ...
    async def create(self, manifest: Manifest) -> Manifest: ...
    async def get(self, kind: str, namespace: str | None, name: str) -> Manifest | None: ...
    async def list(
        self, kind: str, namespace: str | None, *, label_selector: str = ""
    ) -> list[Manifest]: ...
    async def delete(self, kind: str, namespace: str | None, name: str) -> bool: ...
    async def post_event(
        self, involved: Manifest, event_type: str, reason: str, message: str
    ) -> None: ...
    async def patch_merge(
        self, kind: str, namespace: str | None, name: str, patch: Manifest, sub: str = ""
    ) -> Manifest: ...
    async def create_subresource(
        self, kind: str, namespace: str, name: str, sub: str, body: Manifest
    ) -> Manifest: ...
    async def aclose(self) -> None: ...


class KubeClient:
    """Requests to the apiserver with the credentials of `source`, loaded on first use (or
    given already loaded). Every call has a timeout; a 401 renews the credentials once."""

    def __init__(
        self,
        source: KubeConfigSource | Credentials,
        timeout: float = 30.0,
        field_manager: str = FIELD_MANAGER,
    ) -> None:
        self.field_manager = field_manager
        self._source = source.source if isinstance(source, Credentials) else source
        self._credentials = source if isinstance(source, Credentials) else None
        self._api: ApiClient | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=5.0)
        self._lock = asyncio.Lock()

    async def credentials(self) -> Credentials:
        """The live credentials (loading them first). Raises KubeConfigError."""
        async with self._lock:
            if self._credentials is None:
                self._credentials = await self._source.load()
            return self._credentials

    async def _client(self) -> ApiClient:
        credentials = await self.credentials()
        if self._api is None:
            self._api = ApiClient(credentials.configuration)
        return self._api

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str | None = None,
        params: dict[str, str] | None = None,
    ) -> Manifest:
        api = await self._client()
        for attempt in (1, 2):
            headers = {"Accept": "application/json"}
            if content_type:
                headers["Content-Type"] = content_type
            try:
                method, url, headers, payload, _ = await api.param_serialize(
                    method=method,
                    resource_path=path,
                    query_params=list(params.items()) if params else None,
                    header_params=headers,
                    body=body,
                    auth_settings=["BearerToken"],
                )
                response = await api.call_api(
                    method, url, header_params=headers, body=payload, _request_timeout=self._timeout
                )
                data = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                count_kube_request(method, 0, path)
                # The apiserver is down or restarting: callers back off and retry like any error.
                raise KubeError(
                    0, "Unavailable", f"cannot reach the apiserver: {exc!r}", method, path
                ) from exc
            count_kube_request(method, response.status, path)
            if response.status == 401 and attempt == 1:
                # A token that expired or rotated before we noticed: fetch a fresh one once.
                await (await self.credentials()).refresh(force=True)
                continue
            break
        if 200 <= response.status < 300:
            return json.loads(data) if data else {}
        try:
            status = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            status = {"reason": "Unknown", "message": data[:300].decode(errors="replace")}
        error = KubeNotFound if response.status == 404 else KubeError
        raise error(
            response.status,
            str(status.get("reason", "")),
            str(status.get("message", "")),
            method,
            path,
        )

    async def whoami(self) -> str:
        """Who the apiserver takes us for (a SelfSubjectReview). A refusal of the credentials
        raises KubeConfigError; an unreachable apiserver KubeError."""
        try:
            review = await self._request(
                "POST",
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                content_type="application/json",
            )
        except KubeError as exc:
            if exc.status == 401:
                raise KubeConfigError(
                    f"the apiserver refused the credentials of {self._source.describe()}: "
                    f"{exc.message or 'Unauthorized'}"
                ) from None
            raise
        return str(review.get("status", {}).get("userInfo", {}).get("username", "?"))

    async def apply(self, manifest: Manifest, *, force: bool = True) -> Manifest:
        """Server-side apply: we own exactly the fields we send."""
        meta = manifest["metadata"]
        path = resource_path(manifest["kind"], meta.get("namespace"), meta["name"])
        return await self._request(
            "PATCH",
            path,
            body=manifest,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": self.field_manager, "force": str(force).lower()},
        )

    async def create(self, manifest: Manifest) -> Manifest:
        """Create, and only create: an existing object of that name is a 409 AlreadyExists."""
        return await self._request(
            "POST",
            resource_path(manifest["kind"], manifest["metadata"].get("namespace")),
            body=manifest,
            content_type="application/json",
        )

    async def get(self, kind: str, namespace: str | None, name: str) -> Manifest | None:
        try:
            return await self._request("GET", resource_path(kind, namespace, name))
        except KubeNotFound:
            return None

    async def list(
        self, kind: str, namespace: str | None, *, label_selector: str = ""
    ) -> list[Manifest]:
        params = {"labelSelector": label_selector} if label_selector else None
        answer = await self._request("GET", resource_path(kind, namespace), params=params)
        items: list[Manifest] = answer.get("items", [])
        return items

    async def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        try:
            await self._request("DELETE", resource_path(kind, namespace, name))
        except KubeNotFound:
            return False
        return True

    async def post_event(
        self, involved: Manifest, event_type: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event about `involved`, as `kubectl describe` shows them."""
        meta = involved["metadata"]
        now = rfc3339()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", "v1"),
                "kind": involved["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._request(
            "POST",
            resource_path("Event", meta["namespace"]),
            body=event,
            content_type="application/json",
        )

    async def patch_merge(
        self, kind: str, namespace: str | None, name: str, patch: Manifest, sub: str = ""
    ) -> Manifest:
        return await self._request(
            "PATCH",
            resource_path(kind, namespace, name, sub),
            body=patch,
            content_type="application/merge-patch+json",
        )

    async def create_subresource(
        self, kind: str, namespace: str, name: str, sub: str, body: Manifest
    ) -> Manifest:
        """POST to a subresource (a ServiceAccount's `token`: the TokenRequest API)."""
        return await self._request(
            "POST",
            resource_path(kind, namespace, name, sub),
            body=body,
            content_type="application/json",
        )
