"""Pure functions from a BoundaryKubernetesAccess to what the operator makes of it: the
Kubernetes objects it applies, the TokenRequest it sends, and the Boundary names, filter, grants,
ownership markers and brokered credential. No I/O: golden and unit tests cover them."""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from boundary_operator import naming
from boundary_operator.kubeaccess.spec import KubeAccessSpec
from boundary_operator.manifest import Manifest, rfc3339

KIND = "BoundaryKubernetesAccess"
API_VERSION = f"{naming.GROUP}/v1alpha1"
ACCESS_LABEL = f"{naming.GROUP}/kubernetes-access"
NAMESPACE_LABEL = f"{naming.GROUP}/kubernetes-access-namespace"
OWNER_UID_ANNOTATION = f"{naming.GROUP}/owner-uid"
"""On the cluster-scoped binding, which cannot carry an owner reference to a namespaced owner."""
REVOKE_AFTER_ANNOTATION = f"{naming.GROUP}/revoke-after"
"""On a rotated-out token's bound Secret: when it is deleted (which revokes the token)."""
CREDENTIAL_KIND = "kubernetes-access"
"""The `kind` of the brokered json credential; boundary-agent recognises it by this."""
MARKER_FIELD = "kubernetes-access"
"""The ownership marker's field naming the resource; the agent recognises a Kubernetes access
target by it in the target's description."""
ROTATE_AT = 2 / 3
"""A token is replaced when this share of its lifetime has passed."""
GRACE = 1 / 6
"""A replaced token keeps working this share of its lifetime more, so that a client that fetched
it just before the rotation finishes; then its bound Secret is deleted."""


@dataclass(frozen=True)
class AccessNames:
    """A BoundaryKubernetesAccess as the names and ownership markers of what is made for it
    (all a teardown needs, even of a resource whose spec is no longer valid)."""

    name: str
    namespace: str
    uid: str
    cluster: str

    @property
    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/managed-by": naming.MANAGED_BY, ACCESS_LABEL: self.name}

    @property
    def service_account(self) -> str:
        return f"{self.name}-boundary-access"

    @property
    def role_binding(self) -> str:
        return self.service_account

    @property
    def cluster_role_binding(self) -> str:
        # Colons cannot appear in either part, so the name is unambiguous.
        return f"boundary-access:{self.namespace}:{self.name}"

    def bound_secret(self, serial: int) -> str:
        return f"{self.service_account}-token-{serial}"

    # ------------------------------------------------------------------ Boundary names

    @property
    def boundary_name(self) -> str:
        """Name of the target, the credential store and the role. The `kube:` prefix keeps it
        apart from Service targets (`<cluster>/<namespace>/<service>/<port>`)."""
        return f"kube:{self.cluster}/{self.namespace}/{self.name}"

    def description(self, **extra: str | int) -> str:
        return naming.owner_marker(
            cluster=self.cluster,
            namespace=self.namespace,
            **{MARKER_FIELD: self.name},
            uid=self.uid,
            **extra,
        )

    def owns(self, description: str) -> bool:
        fields = naming.parse_owner_marker(description, "cluster", "namespace", MARKER_FIELD, "uid")
        return fields is not None and (
            fields["cluster"],
            fields["namespace"],
            fields[MARKER_FIELD],
            fields["uid"],
        ) == (self.cluster, self.namespace, self.name, self.uid)


@dataclass(frozen=True)
class AccessContext(AccessNames):
    """One BoundaryKubernetesAccess and the operator settings its objects depend on."""

    spec: KubeAccessSpec
    api_host: str = "kubernetes.default.svc"
    api_port: int = 443
    server_name: str = "kubernetes.default.svc"

    @property
    def egress_filter(self) -> str:
        worker = self.spec.worker
        if worker is not None and worker.filter is not None:
            return worker.filter
        if worker is not None and worker.name is not None:
            return (
                f'"{worker.name}" in "/tags/boundary_pki_worker" and '
                f'"{self.namespace}" in "/tags/namespace"'
            )
        return f'"{self.namespace}" in "/tags/namespace" and "kubernetes" in "/tags/type"'


def grants(target_id: str) -> list[str]:
    """Sessions to the target, and reading it: boundary-agent reads the target to learn its
    port and that it is a Kubernetes API (else it would spend a session to learn the port)."""
    return [f"ids={target_id};actions=authorize-session,read"]


# ---------------------------------------------------------------------- Kubernetes objects


def owner_reference(ctx: AccessNames) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": ctx.name,
        "uid": ctx.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(ctx: AccessContext, name: str, **extra: Any) -> Manifest:
    return {
        "name": name,
        "namespace": ctx.namespace,
        "labels": ctx.labels,
        "ownerReferences": [owner_reference(ctx)],
        **extra,
    }


def build_service_account(ctx: AccessContext) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(ctx, ctx.service_account),
        # No pod runs as it: its tokens come from the TokenRequest API only.
        "automountServiceAccountToken": False,
    }


def _subjects(ctx: AccessContext) -> list[Manifest]:
    return [{"kind": "ServiceAccount", "name": ctx.service_account, "namespace": ctx.namespace}]


def _role_ref(ctx: AccessContext) -> Manifest:
    ref = ctx.spec.role_ref
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": ref.kind, "name": ref.name}


def build_role_binding(ctx: AccessContext) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(ctx, ctx.role_binding),
        "roleRef": _role_ref(ctx),
        "subjects": _subjects(ctx),
    }


def build_cluster_role_binding(ctx: AccessContext) -> Manifest:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": ctx.cluster_role_binding,
            "labels": {**ctx.labels, NAMESPACE_LABEL: ctx.namespace},
            "annotations": {OWNER_UID_ANNOTATION: ctx.uid},
        },
        "roleRef": _role_ref(ctx),
        "subjects": _subjects(ctx),
    }


def build_binding(ctx: AccessContext) -> Manifest:
    return build_cluster_role_binding(ctx) if ctx.spec.cluster_wide else build_role_binding(ctx)


def build_bound_secret(ctx: AccessContext, serial: int) -> Manifest:
    """The object a token is bound to: deleting it revokes the token. It holds no data."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(ctx, ctx.bound_secret(serial)),
        "type": "Opaque",
    }


def build_token_request(ctx: AccessContext, bound: Manifest) -> Manifest:
    meta = bound["metadata"]
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "expirationSeconds": ctx.spec.lifetime_seconds,
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Secret",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


def is_ours(ctx: AccessNames, live: Manifest) -> bool:
    """Whether a live Kubernetes object is one this resource made."""
    meta = live.get("metadata") or {}
    if live.get("kind") == "ClusterRoleBinding":
        return bool((meta.get("annotations") or {}).get(OWNER_UID_ANNOTATION) == ctx.uid)
    return any(ref.get("uid") == ctx.uid for ref in meta.get("ownerReferences") or [])


# ---------------------------------------------------------------------- the brokered token


@dataclass(frozen=True)
class TokenState:
    """What the brokered credential holds, as its description records it (the token itself is
    never readable back: Boundary answers reads of a json credential with an HMAC)."""

    serial: int
    service_account_uid: str
    issued: datetime.datetime
    expires: datetime.datetime
    digest: str
    """Of what else the object holds (CA, server name, namespace): a change rewrites it."""

    @property
    def rotate_at(self) -> datetime.datetime:
        return self.issued + (self.expires - self.issued) * ROTATE_AT

    @property
    def revoke_after(self) -> datetime.datetime:
        """When the token may be revoked: a scheduled rotation plus the grace."""
        return self.issued + (self.expires - self.issued) * (ROTATE_AT + GRACE)

    @property
    def grace(self) -> datetime.timedelta:
        return (self.expires - self.issued) * GRACE

    def fields(self) -> dict[str, str | int]:
        return {
            "serial": self.serial,
            "sa": self.service_account_uid,
            "issued": int(self.issued.timestamp()),
            "expires": int(self.expires.timestamp()),
            "digest": self.digest,
        }

    @classmethod
    def parse(cls, description: str) -> TokenState | None:
        fields = naming.parse_owner_marker(
            description, "serial", "sa", "issued", "expires", "digest"
        )
        if fields is None:
            return None
        try:
            return cls(
                serial=int(fields["serial"]),
                service_account_uid=fields["sa"],
                issued=datetime.datetime.fromtimestamp(int(fields["issued"]), datetime.UTC),
                expires=datetime.datetime.fromtimestamp(int(fields["expires"]), datetime.UTC),
                digest=fields["digest"],
            )
        except ValueError:
            return None


def context_digest(ctx: AccessContext, certificate_authority: str) -> str:
    """Digest of what the credential holds beside the token."""
    text = json.dumps([certificate_authority, ctx.server_name, ctx.namespace])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def credential_object(
    ctx: AccessContext, token: str, state: TokenState, certificate_authority: str
) -> dict[str, Any]:
    """The json credential brokered to each session: what a kubeconfig needs besides the
    server (the alias), and the token with when to fetch it again."""
    return {
        "kind": CREDENTIAL_KIND,
        "token": token,
        "expiration": rfc3339(state.expires),
        "revoke_after": rfc3339(state.revoke_after),
        "certificate_authority": certificate_authority,
        "server_name": ctx.server_name,
        "namespace": ctx.namespace,
    }


def rotation_reason(
    state: TokenState | None,
    now: datetime.datetime,
    *,
    service_account_uid: str,
    bound_secret_exists: bool,
    digest: str,
    requested: bool,
) -> str | None:
    """Why a new token is needed now (None: the current one stays). The token cannot be read
    back from Boundary, so a change of what the credential holds beside it also means a new
    token."""
    if state is None:
        return "no token yet"
    if requested:
        return "rotation requested"
    if state.service_account_uid != service_account_uid:
        return "the ServiceAccount was made again"
    if not bound_secret_exists:
        return f"the token's bound Secret (serial {state.serial}) is gone"
    if state.digest != digest:
        return "the cluster CA or the server name changed"
    if now >= state.rotate_at:
        return f"two thirds of its lifetime passed (at {rfc3339(state.rotate_at)})"
    return None
