"""A small asyncio Kubernetes client on httpx: just what the operator's service layer needs
(server-side apply of built manifests, reads, deletes, status patches), with no dependency on
kopf, so the sync logic can be tested and benchmarked alone."""

from __future__ import annotations

import base64
import datetime
import json
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

FIELD_MANAGER = "boundary-operator"

# kind -> (API prefix, plural). Only the kinds the operator manages.
_KINDS: dict[str, tuple[str, str]] = {
    "ConfigMap": ("api/v1", "configmaps"),
    "Secret": ("api/v1", "secrets"),
    "Service": ("api/v1", "services"),
    "Pod": ("api/v1", "pods"),
    "PersistentVolumeClaim": ("api/v1", "persistentvolumeclaims"),
    "Event": ("api/v1", "events"),
    "StatefulSet": ("apis/apps/v1", "statefulsets"),
    "BoundaryPKIWorker": ("apis/workers.boundaryproject.io/v1alpha1", "boundarypkiworkers"),
}

Manifest = dict[str, Any]


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str, method: str, path: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{method} {path}: {message} ({reason} {status})")


class KubeNotFound(KubeError):
    pass


@dataclass(frozen=True)
class KubeCredentials:
    server: str
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    token: str | None = None
    insecure: bool = False

    def __repr__(self) -> str:
        return f"KubeCredentials(server={self.server!r}, token={'set' if self.token else 'unset'})"


def _materialise(data_b64: str, suffix: str) -> str:
    handle = tempfile.NamedTemporaryFile(delete=False, suffix=suffix)  # noqa: SIM115
    with handle:
        handle.write(base64.b64decode(data_b64))
    os.chmod(handle.name, 0o600)
    return handle.name


def load_kubeconfig(path: str | None = None, context: str | None = None) -> KubeCredentials:
    """Credentials from a kubeconfig (KUBECONFIG or ~/.kube/config): client certificates, a
    bearer token, and inline (*-data) or file forms."""
    path = (
        path
        or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        or str(Path.home() / ".kube" / "config")
    )
    config = yaml.safe_load(Path(path).read_text())
    name = context or config.get("current-context")
    ctx = next(c["context"] for c in config["contexts"] if c["name"] == name)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == ctx["user"])
    base = Path(path).parent

    def file_of(entry: dict[str, Any], key: str, suffix: str) -> str | None:
        if entry.get(f"{key}-data"):
            return _materialise(entry[f"{key}-data"], suffix)
        if entry.get(key):
            return str(base / entry[key])
        return None

    return KubeCredentials(
        server=cluster["server"],
        ca_file=file_of(cluster, "certificate-authority", ".crt"),
        client_cert=file_of(user, "client-certificate", ".crt"),
        client_key=file_of(user, "client-key", ".key"),
        token=user.get("token"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
    )


def in_cluster_credentials() -> KubeCredentials:
    root = Path("/var/run/secrets/kubernetes.io/serviceaccount")
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    return KubeCredentials(
        server=f"https://{host}:{port}",
        ca_file=str(root / "ca.crt"),
        token=(root / "token").read_text().strip(),
    )


def default_credentials() -> KubeCredentials:
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        return in_cluster_credentials()
    return load_kubeconfig()


def resource_path(kind: str, namespace: str | None, name: str = "", sub: str = "") -> str:
    prefix, plural = _KINDS[kind]
    path = f"/{prefix}/namespaces/{namespace}/{plural}" if namespace else f"/{prefix}/{plural}"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


class KubeClient:
    def __init__(self, credentials: KubeCredentials, timeout: float = 30.0) -> None:
        verify: ssl.SSLContext | bool = True
        if credentials.insecure:
            verify = False
        else:
            verify = ssl.create_default_context(cafile=credentials.ca_file)
            if credentials.client_cert and credentials.client_key:
                verify.load_cert_chain(credentials.client_cert, credentials.client_key)
        headers = {"Accept": "application/json"}
        if credentials.token:
            headers["Authorization"] = f"Bearer {credentials.token}"
        self._http = httpx.AsyncClient(
            base_url=credentials.server,
            verify=verify,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str | None = None,
        params: dict[str, str] | None = None,
    ) -> Manifest:
        headers = {"Content-Type": content_type} if content_type else {}
        content = json.dumps(body).encode() if body is not None else None
        try:
            response = await self._http.request(
                method, path, content=content, headers=headers, params=params
            )
        except httpx.TransportError as exc:
            # The apiserver is down or restarting: callers back off and retry like any error.
            raise KubeError(
                0, "Unavailable", f"cannot reach the apiserver: {exc!r}", method, path
            ) from exc
        if response.is_success:
            return response.json() if response.content else {}
        try:
            status = response.json()
        except json.JSONDecodeError:
            status = {"reason": "Unknown", "message": response.text[:300]}
        error = KubeNotFound if response.status_code == 404 else KubeError
        raise error(
            response.status_code,
            str(status.get("reason", "")),
            str(status.get("message", "")),
            method,
            path,
        )

    async def apply(self, manifest: Manifest, *, force: bool = True) -> Manifest:
        """Server-side apply: we own exactly the fields we send."""
        meta = manifest["metadata"]
        path = resource_path(manifest["kind"], meta.get("namespace"), meta["name"])
        return await self._request(
            "PATCH",
            path,
            body=manifest,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": FIELD_MANAGER, "force": str(force).lower()},
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
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
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
