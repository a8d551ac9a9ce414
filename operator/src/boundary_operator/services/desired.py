"""From an annotated Kubernetes Service to the Boundary targets it should have. Pure: no I/O,
so every rule about annotations is unit-tested, and invalid input is found before any API call.

Annotations (prefix boundaryproject.io/):
- expose: "true" opts the Service in.
- alias: the alias of the first port; other ports get "<port name or number>.<alias>".
- ports: comma-separated port names or numbers; default every TCP port.
- scope: project id (p_...) or name; default the operator's default scope.
- worker: a BoundaryPKIWorker in the namespace to egress through; default any worker of the
  namespace.
- credentials-secret: a Secret with `username` and `password`, brokered to the session.
- session-max-seconds, session-connection-limit.
- grant-groups, grant-users: comma-separated ids or names of Boundary groups (managed groups by
  id) and users who may connect: an owned role grants them authorize-session and read on
  exactly the Service's targets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from boundary_operator import naming
from boundary_operator.manifest import Manifest

PREFIX = "boundaryproject.io/"
EXPOSE = PREFIX + "expose"
ALIAS = PREFIX + "alias"
PORTS = PREFIX + "ports"
SCOPE = PREFIX + "scope"
WORKER = PREFIX + "worker"
CREDENTIALS_SECRET = PREFIX + "credentials-secret"
SESSION_MAX_SECONDS = PREFIX + "session-max-seconds"
SESSION_CONNECTION_LIMIT = PREFIX + "session-connection-limit"
GRANT_GROUPS = PREFIX + "grant-groups"
GRANT_USERS = PREFIX + "grant-users"
TARGETS_STATUS = PREFIX + "targets"
"""Written by the operator: the Service's targets and aliases."""

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_USER_ID = re.compile(r"^u_[A-Za-z0-9]+$")
_GROUP_ID = re.compile(r"^(g|mgoidc|mgldap)_[A-Za-z0-9]+$")
ANY_AUTHENTICATED_USER = "u_auth"
"""Boundary's built-in principal for every logged-in user: accepted in grant-users as is."""


@dataclass(frozen=True)
class SyncSettings:
    cluster_name: str
    default_scope: str = ""
    alias_template: str = "{service}.{namespace}.{cluster}"
    cluster_domain: str = "cluster.local"
    address_mode: str = "dns"  # dns | clusterip


@dataclass(frozen=True)
class Credentials:
    secret_name: str
    username: str
    password: str = field(repr=False)
    resource_version: str = ""


@dataclass(frozen=True)
class DesiredTarget:
    service_uid: str
    namespace: str
    service: str
    port_key: str
    """The port's name, or its number when unnamed: stable across port number changes."""
    name: str
    address: str
    port: int
    alias: str
    scope: str
    egress_worker_filter: str
    session_max_seconds: int | None
    session_connection_limit: int | None
    credentials: Credentials | None


@dataclass(frozen=True)
class Principal:
    """A user or group named by a grant annotation: its id, or its name to look up."""

    kind: Literal["user", "group"]
    ref: str

    @property
    def is_id(self) -> bool:
        return bool((_USER_ID if self.kind == "user" else _GROUP_ID).match(self.ref))

    @property
    def annotation(self) -> str:
        return GRANT_USERS if self.kind == "user" else GRANT_GROUPS


@dataclass
class Desired:
    targets: list[DesiredTarget] = field(default_factory=list)
    grants: tuple[Principal, ...] | None = None
    """Who may connect, when a grant annotation is present (an owned role then grants them);
    None: no grant annotation, so no role."""
    problems: list[str] = field(default_factory=list)


def is_exposed(service: Manifest) -> bool:
    annotations = service["metadata"].get("annotations") or {}
    return str(annotations.get(EXPOSE, "")).lower() == "true"


def alias_problem(value: str) -> str | None:
    """Boundary's rule for alias values: DNS-like lowercase labels, under 254 characters, the
    last label not all digits."""
    if not value or len(value) >= 254:
        return f"alias {value!r} must be 1-253 characters"
    labels = value.split(".")
    bad = [label for label in labels if not _LABEL.match(label)]
    if bad:
        return f"alias {value!r} has invalid label {bad[0]!r} (lowercase letters, digits, '-')"
    if labels[-1].isdigit():
        return f"alias {value!r} must not end in an all-digit label"
    return None


def _int_annotation(annotations: dict[str, str], key: str, problems: list[str]) -> int | None:
    raw = annotations.get(key)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"{key}: {raw!r} is not a whole number")
        return None
    if value < (-1 if key == SESSION_CONNECTION_LIMIT else 1):
        problems.append(f"{key}: {value} is out of range")
        return None
    return value


def desired_targets(
    service: Manifest,
    settings: SyncSettings,
    *,
    secrets: dict[str, Manifest],
    worker_names: set[str],
) -> Desired:
    """The targets `service` asks for, or every problem with its annotations.

    `secrets` are the namespace's Secrets by name (only the one named is read); `worker_names`
    the BoundaryPKIWorkers in the namespace."""
    desired = Desired()
    problems = desired.problems
    meta, spec = service["metadata"], service.get("spec") or {}
    annotations: dict[str, str] = meta.get("annotations") or {}
    namespace, name = meta["namespace"], meta["name"]

    tcp_ports = [p for p in spec.get("ports") or [] if p.get("protocol", "TCP") == "TCP"]
    selected = tcp_ports
    if PORTS in annotations:
        wanted = [p.strip() for p in annotations[PORTS].split(",") if p.strip()]
        selected = []
        for item in wanted:
            match = [p for p in tcp_ports if p.get("name") == item or str(p["port"]) == item]
            if not match:
                problems.append(f"{PORTS}: the Service has no TCP port {item!r}")
            selected += [p for p in match if p not in selected]
    if not selected and not any(p.startswith(PORTS) for p in problems):
        problems.append("the Service has no TCP port to expose")

    alias = annotations.get(ALIAS) or settings.alias_template.format(
        service=name, namespace=namespace, cluster=settings.cluster_name
    )
    aliases = [alias] + [f"{p.get('name') or p['port']}.{alias}" for p in selected[1:]]
    for value in aliases:
        problem = alias_problem(value)
        if problem:
            problems.append(f"{ALIAS}: {problem}")
    if len(set(aliases)) != len(aliases):
        problems.append(f"{ALIAS}: the ports' aliases are not distinct: {', '.join(aliases)}")

    scope = annotations.get(SCOPE) or settings.default_scope
    if not scope:
        problems.append(f"{SCOPE}: no project given, and the operator has no default scope")

    worker = annotations.get(WORKER)
    if worker is not None and worker not in worker_names:
        problems.append(f"{WORKER}: no BoundaryPKIWorker {worker!r} in namespace {namespace}")
    if worker:
        egress = f'"{worker}" in "/tags/boundary_pki_worker" and "{namespace}" in "/tags/namespace"'
    else:
        egress = f'"{namespace}" in "/tags/namespace" and "kubernetes" in "/tags/type"'
    # A worker whose pod is stopping carries the draining tag: no new session goes to it. A
    # worker without the key passes (go-bexpr: "not in" a missing key is true).
    egress += f' and "{naming.DRAINING_MARK}" not in "/tags/{naming.DRAINING_TAG}"'

    credentials = None
    secret_name = annotations.get(CREDENTIALS_SECRET)
    if secret_name:
        credentials = _credentials(secrets.get(secret_name), secret_name, problems)

    grants = _grants(annotations, problems)
    max_seconds = _int_annotation(annotations, SESSION_MAX_SECONDS, problems)
    connection_limit = _int_annotation(annotations, SESSION_CONNECTION_LIMIT, problems)

    if settings.address_mode == "clusterip":
        address = str(spec.get("clusterIP") or "")
        if not address or address == "None":
            problems.append("the Service has no cluster IP (headless); use address mode dns")
    else:
        address = f"{name}.{namespace}.svc.{settings.cluster_domain}"
    if problems:
        return desired
    desired.grants = grants
    for port, value in zip(selected, aliases, strict=True):
        key = str(port.get("name") or port["port"])
        desired.targets.append(
            DesiredTarget(
                service_uid=meta["uid"],
                namespace=namespace,
                service=name,
                port_key=key,
                name=f"{settings.cluster_name}/{namespace}/{name}/{key}",
                address=address,
                port=int(port["port"]),
                alias=value,
                scope=scope,
                egress_worker_filter=egress,
                session_max_seconds=max_seconds,
                session_connection_limit=connection_limit,
                credentials=credentials,
            )
        )
    return desired


def _grants(annotations: dict[str, str], problems: list[str]) -> tuple[Principal, ...] | None:
    """The principals of grant-groups and grant-users, in order, without repeats; None when
    neither annotation is there. Ids of the wrong kind, and principals Boundary would refuse or
    that would open the Service to anyone, are problems."""
    if GRANT_GROUPS not in annotations and GRANT_USERS not in annotations:
        return None
    found: list[Principal] = []
    kinds: tuple[tuple[Literal["group", "user"], str], ...] = (
        ("group", GRANT_GROUPS),
        ("user", GRANT_USERS),
    )
    for kind, key in kinds:
        for ref in (r.strip() for r in annotations.get(key, "").split(",")):
            principal = Principal(kind, ref)
            problem = _principal_problem(principal)
            if problem:
                problems.append(f"{key}: {problem}")
            elif ref and principal not in found:
                found.append(principal)
    return tuple(found)


def _principal_problem(principal: Principal) -> str | None:
    ref = principal.ref
    if principal.kind == "group" and _USER_ID.match(ref):
        return f"{ref!r} is a user id; users go in {GRANT_USERS}"
    if principal.kind == "user" and _GROUP_ID.match(ref):
        return f"{ref!r} is a group id; groups go in {GRANT_GROUPS}"
    if ref == "u_anon":
        return "'u_anon' is anyone, logged in or not: access is not granted to it"
    if ref == "u_recovery":
        return "'u_recovery' (the recovery KMS user) cannot hold a role"
    return None


def _credentials(secret: Manifest | None, name: str, problems: list[str]) -> Credentials | None:
    import base64

    if secret is None:
        problems.append(f"{CREDENTIALS_SECRET}: Secret {name!r} does not exist")
        return None
    data = secret.get("data") or {}
    missing = [k for k in ("username", "password") if k not in data]
    if missing:
        problems.append(f"{CREDENTIALS_SECRET}: Secret {name!r} lacks {' and '.join(missing)}")
        return None
    return Credentials(
        secret_name=name,
        username=base64.b64decode(data["username"]).decode(),
        password=base64.b64decode(data["password"]).decode(),
        resource_version=str(secret["metadata"].get("resourceVersion", "")),
    )
