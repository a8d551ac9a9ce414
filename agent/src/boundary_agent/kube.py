"""kubectl through Boundary, on the client side.

A BoundaryKubernetesAccess (made by boundary-k8s's operator) is a Boundary target to a cluster's
apiserver, with an alias, brokering a json credential: a short-lived ServiceAccount token, its
expiry, the cluster CA and the name the apiserver's certificate carries. Here:
- which of a user's aliases are such targets (the target's description carries the operator's
  marker with a `kubernetes-access=` field);
- the control API's two calls: `kube-credential` authorizes a fresh session for the caller and
  answers its brokered credential (each kubectl use is a Boundary session of its own, and the
  connections kubectl then makes to the alias go through that session), and `kube-contexts`
  answers what a kubeconfig needs for each such alias (no token);
- the ExecCredential kubectl reads from `boundary-agent kube-credential <alias>`, and merging
  contexts into a kubeconfig without clobbering anything else in it.
Tokens are handed only to the OS user whose login authorized the session, over the control
API's loopback connection; they are never logged or written down."""

from __future__ import annotations

import base64
import datetime
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from boundary_api import BoundaryError, NotFound, PermissionDenied, SessionAuthorization

if TYPE_CHECKING:
    from boundary_agent.daemon import Agent
    from boundary_agent.users import User

OWNER_MARKER = "boundary-k8s "
MARKER_FIELD = "kubernetes-access="
CREDENTIAL_KIND = "kubernetes-access"
EXEC_API_VERSION = "client.authentication.k8s.io/v1"
REFETCH_MARGIN = datetime.timedelta(seconds=60)
"""A credential past its revoke_after is handed out as good for this long at most (the
operator may be late with a rotation), so kubectl asks again soon."""


def is_kubernetes_target(description: str) -> bool:
    """Whether a target is a BoundaryKubernetesAccess's: boundary-k8s's ownership marker
    (`boundary-k8s cluster=... kubernetes-access=NAME ...`)."""
    return description.startswith(OWNER_MARKER) and any(
        part.startswith(MARKER_FIELD) for part in description.split()[1:]
    )


class KubeAccessError(Exception):
    """Why a Kubernetes credential or context cannot be had; `status` is the HTTP status the
    control API answers with."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class KubeCredential:
    alias: str
    port: int
    session_id: str
    token: str
    expiration: datetime.datetime
    revoke_after: datetime.datetime
    certificate_authority: str
    server_name: str
    namespace: str

    def refetch_at(self, now: datetime.datetime) -> datetime.datetime:
        """When kubectl should run the plugin again: when the token may be revoked (a scheduled
        rotation plus its grace); past that, soon; never after the token expires."""
        due = self.revoke_after if self.revoke_after > now else now + REFETCH_MARGIN
        return min(due, self.expiration)

    def context(self) -> dict[str, Any]:
        """What a kubeconfig needs (no token)."""
        return {
            "alias": self.alias,
            "server": server_url(self.alias, self.port),
            "server_name": self.server_name,
            "certificate_authority": self.certificate_authority,
            "namespace": self.namespace,
        }

    def answer(self, now: datetime.datetime) -> dict[str, Any]:
        return {
            **self.context(),
            "session_id": self.session_id,
            "token": self.token,
            "expiration": _rfc3339(self.refetch_at(now)),
        }


def server_url(alias: str, port: int) -> str:
    return f"https://{alias}" if port == 443 else f"https://{alias}:{port}"


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(value: object, field: str, alias: str) -> datetime.datetime:
    try:
        return datetime.datetime.fromisoformat(str(value))
    except ValueError:
        raise KubeAccessError(
            502, f"the credential brokered for {alias} has no valid {field}"
        ) from None


def credential_from(alias: str, authorization: SessionAuthorization) -> KubeCredential:
    """The Kubernetes credential a session brokered. KubeAccessError when there is none."""
    for brokered in authorization.credentials:
        value = brokered.decoded
        if value.get("kind") != CREDENTIAL_KIND:
            continue
        missing = [k for k in ("token", "certificate_authority", "server_name") if not value.get(k)]
        if missing:
            raise KubeAccessError(
                502, f"the credential brokered for {alias} lacks {', '.join(missing)}"
            )
        expiration = _time(value.get("expiration"), "expiration", alias)
        return KubeCredential(
            alias=alias,
            port=authorization.endpoint_port,
            session_id=authorization.session_id,
            token=str(value["token"]),
            expiration=expiration,
            revoke_after=_time(
                value.get("revoke_after", value.get("expiration")), "revoke_after", alias
            ),
            certificate_authority=str(value["certificate_authority"]),
            server_name=str(value["server_name"]),
            namespace=str(value.get("namespace") or ""),
        )
    raise KubeAccessError(
        404, f"{alias} is not a Kubernetes access: its sessions broker no Kubernetes credential"
    )


# ---------------------------------------------------------------------- the control API's side


def _logged_in(agent: Agent, uid: int | None) -> User:
    user = agent.users.get(uid)
    if user is None:
        raise KubeAccessError(
            401, "you are not logged in to the agent: run `boundary-agent login` first"
        )
    if agent.paused:
        raise KubeAccessError(503, f"the agent is paused ({agent.pause_reason})")
    return user


async def kube_credential(agent: Agent, uid: int | None, alias: str) -> KubeCredential:
    """A new session to the alias for this OS user's login (it serves the connections kubectl
    makes next) and the credential it brokered."""
    user = _logged_in(agent, uid)
    if alias not in user.aliases:
        await agent.refresh_user(user)  # new since the last refresh?
    known = user.aliases.get(alias)
    if known is None:
        raise KubeAccessError(
            404,
            f"{alias} is not among the aliases your Boundary user may use (deleted, or not "
            "granted to you)",
        )
    await agent.ensure_listener(user, known)
    addresses = agent.listeners.addresses(alias)
    local = addresses.addresses[0] if addresses and addresses.addresses else ""
    try:
        session = await agent.sessions.authorize(
            user, alias, local, agent.ports.get(alias, 0), fresh=True
        )
    except (PermissionDenied, NotFound) as exc:
        raise KubeAccessError(
            403, f"Boundary refused a session to {alias} for your user: {exc.message}"
        ) from None
    except BoundaryError as exc:
        raise KubeAccessError(502, f"cannot authorize a session to {alias}: {exc}") from None
    return credential_from(alias, session.authorization)


async def kube_contexts(agent: Agent, uid: int | None) -> list[dict[str, Any]]:
    """A kubeconfig context for each Kubernetes access alias this user may use (a session
    each: the CA and server name come from the brokered credential)."""
    user = _logged_in(agent, uid)
    await agent.refresh_user(user)
    contexts = []
    for alias in sorted(agent.kubernetes_aliases(user)):
        try:
            contexts.append((await kube_credential(agent, uid, alias)).context())
        except KubeAccessError as exc:
            contexts.append({"alias": alias, "error": str(exc)})
    return contexts


# ---------------------------------------------------------------------- kubectl's side


def exec_credential(answer: dict[str, Any]) -> dict[str, Any]:
    """The ExecCredential kubectl reads from the plugin's stdout."""
    return {
        "apiVersion": EXEC_API_VERSION,
        "kind": "ExecCredential",
        "status": {"token": answer["token"], "expirationTimestamp": answer["expiration"]},
    }


CONTEXT_PREFIX = "boundary-"
"""Cluster, user and context entries this command writes are named boundary-<alias>; entries of
any other name are never changed."""


def kubeconfig_entries(
    context: dict[str, Any], command: list[str], options: list[str]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The cluster, user and context entries for one alias. The user runs `command` (this
    program) as an exec credential plugin: `command kube-credential OPTIONS ALIAS`."""
    name = f"{CONTEXT_PREFIX}{context['alias']}"
    cluster = {
        "name": name,
        "cluster": {
            "server": context["server"],
            "tls-server-name": context["server_name"],
            "certificate-authority-data": base64.b64encode(
                context["certificate_authority"].encode()
            ).decode(),
        },
    }
    user = {
        "name": name,
        "user": {
            "exec": {
                "apiVersion": EXEC_API_VERSION,
                "command": command[0],
                "args": [*command[1:], "kube-credential", *options, context["alias"]],
                "interactiveMode": "Never",
                "provideClusterInfo": False,
            }
        },
    }
    entry: dict[str, Any] = {"cluster": name, "user": name}
    if context.get("namespace"):
        entry["namespace"] = context["namespace"]
    return cluster, user, {"name": name, "context": entry}


def merge_kubeconfig(
    config: dict[str, Any],
    contexts: list[dict[str, Any]],
    command: list[str],
    options: list[str],
) -> dict[str, Any]:
    """`config` with one context (and its cluster and user) per alias, replacing only entries
    of the same names; everything else, current-context included, stays as it was."""
    merged = {
        "apiVersion": config.get("apiVersion", "v1"),
        "kind": config.get("kind", "Config"),
        **{k: v for k, v in config.items() if k not in ("apiVersion", "kind")},
    }
    for section in ("clusters", "users", "contexts"):
        merged[section] = list(merged.get(section) or [])
    for context in contexts:
        for section, entry in zip(
            ("clusters", "users", "contexts"),
            kubeconfig_entries(context, command, options),
            strict=True,
        ):
            kept = [e for e in merged[section] if e.get("name") != entry["name"]]
            merged[section] = [*kept, entry]
    return merged
