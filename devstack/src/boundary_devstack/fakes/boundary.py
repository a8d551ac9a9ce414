"""An in-memory Boundary controller, served to the real `boundary_api.BoundaryClient` through
httpx.MockTransport: the client's paths, error mapping, retries and listings all run as against
the real controller. It keeps the semantics the operator and the agent rely on, each checked
against the real controller by the contract tests (tests/test_boundary_contract.py and
tests/e2e/test_boundary_contract.py):

- unique names (a target's within its project, a worker's, an alias value) answer 400
  InvalidArgument with the controller's own message, and so does a target address shorter than
  3 characters (naming the field);
- updates carry a version; a stale one answers 404 "... incorrect version provided", and one
  changing no field answers 400 naming the update mask;
- deletes of what does not exist answer 404; deleting a target leaves its aliases behind with
  no destination;
- listings page, hand out list tokens, and answer a token with only the changes since
  (`removed_ids` for deletions); an unknown token answers 400 naming the list token;
- list calls are rate-limited per token (150 in 30 s, as the real controller), answering 429
  with Retry-After; `throttle(n, retry_after)` makes the next n calls of any kind answer 429;
- authorize-session takes a target id or an alias value and answers `{"item": ...}` with a
  decodable authorization token;
- a worker's API tags are added and removed with its version (each change bumps it); its
  canonical tags merge its config tags (`report_config_tags`, what a running worker reports)
  and API tags; a tag change at a stale version answers 500, as the real controller does;
- a token that ended (revoked through auth-tokens, or by `expire_tokens`) is answered like an
  unknown caller: 403 PermissionDenied, as the real controller does, not 401;
- roles start with `grant_scope_ids` ["this"] and no principals or grants; set-principals and
  set-grants take the version and bump it, and answer a stale one with a 500 (not a 404, as
  updates do); listings leave principals and grants out (reads carry them); a principal id of
  no known kind answers 400 naming `principal_ids`, one that does not exist a 500
  (UNKNOWN_PRINCIPAL); role, user and group names are unique per scope;
- a change of a role's grants or principals invalidates the resolvable-alias list tokens handed
  out before it (400, kind "invalid list token": "grants have changed since list token was
  issued"), as the real controller's grants hash does;
- users, groups (with set-members) and managed groups (`add_managed_group`, read only) are
  listed recursively from a scope, as the principals the operator resolves;
- json credentials keep their object, answer reads with an HMAC only, and are brokered to
  sessions as the object itself.
Who may do what is not modelled: the fake's one user is the admin; grants are proven on the
real controller.

`writes` and `reads` count the calls, by method, as the operator's metrics do."""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import math
import re
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

from boundary_api import BoundaryClient
from boundary_api.authdata import base58_encode, encode_varint

UNIQUE = (
    "Invalid request.  Request attempted to make second resource with the same field value "
    "that must be unique."
)
NOT_FOUND = "Resource not found."
ORG, PROJECT = "o_1234567890", "p_1234567890"
AUTH_METHOD, LOGIN, PASSWORD = "ampw_1234567890", "admin", "password"
USER = "u_1234567890"
PRINCIPAL_PREFIXES = ("u_", "g_", "mgoidc_", "mgldap_")
BUILT_IN_USERS = ("u_anon", "u_auth")

JSON = dict[str, Any]
_TAG_ACTIONS = ("add-worker-tags", "remove-worker-tags", "set-worker-tags")
LISTINGS_LEAVE_OUT = {
    "targets": ("brokered_credential_source_ids",),
    "roles": ("principal_ids", "grant_strings"),
}
SCOPED_LISTINGS = ("targets", "roles", "users", "groups")
UNKNOWN_PRINCIPAL = (
    500,
    "Internal",
    "Unable to set principals on role: iam.(Repository).SetPrincipalRoles: db.DoTx: "
    "iam.(Repository).SetPrincipalRoles: unable to add users: db.CreateItems: insert or update on "
    'table "iam_user_role" violates foreign key constraint "iam_user_role_principal_id_fkey": '
    "integrity violation: error #1003.",
)
"""What the real controller (0.21.1, measured) answers set-principals naming a well-formed id
that does not exist: its database's foreign key refusal, as a 500."""
MEMBERSHIP_ACTIONS = {
    "set-principals": ("role", "SetPrincipalRoles", "set principals on"),
    "set-grants": ("role", "SetRoleGrants", "set grants on"),
    "set-members": ("group", "SetGroupMembers", "set members on"),
}
"""Actions whose stale version the real controller answers with a 500 (measured), where an
update's answers 404."""


class Answer(Exception):
    def __init__(
        self, status: int, kind: str, message: str, fields: dict[str, str] | None = None
    ) -> None:
        self.status, self.kind, self.message, self.fields = status, kind, message, fields or {}


def _check_address(address: str) -> None:
    if address and not 3 <= len(address) <= 255:
        raise Answer(
            400,
            "InvalidArgument",
            "Error in provided request.",
            {"address": "Address length must be between 3 and 255 characters."},
        )


def _grants(grants: list[str]) -> list[str]:
    """Grant strings as the controller checks their form: `key=value` segments of the known
    keys, with actions (or output fields)."""
    for grant in grants:
        segments = dict(s.partition("=")[::2] for s in grant.split(";"))
        if (
            not grant
            or set(segments) - {"ids", "type", "actions", "output_fields"}
            or not (segments.get("actions") or segments.get("output_fields"))
        ):
            raise Answer(
                400,
                "InvalidArgument",
                "Errors in provided fields.",
                {"grant_strings": f"Improperly formatted grant {grant!r}."},
            )
    return list(grants)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return encode_varint(number << 3) + encode_varint(value)
    return encode_varint(number << 3 | 2) + encode_varint(len(value)) + value


@dataclass
class Collection:
    """Objects of one kind, with the change sequence list tokens refer to."""

    prefix: str
    items: dict[str, JSON] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)


@dataclass
class FakeController:
    scopes: dict[str, JSON] = field(
        default_factory=lambda: {
            "global": {"id": "global", "type": "global", "name": "global", "scope_id": ""},
            ORG: {"id": ORG, "type": "org", "name": "Generated org scope", "scope_id": "global"},
            PROJECT: {
                "id": PROJECT,
                "type": "project",
                "name": "Generated project scope",
                "scope_id": ORG,
            },
        }
    )
    worker_address: str = "127.0.0.1:9202"
    writes: Counter[str] = field(default_factory=Counter)
    reads: Counter[str] = field(default_factory=Counter)
    _collections: dict[str, Collection] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000000000))
    _throttled: list[float] = field(default_factory=list)
    _grants_epoch: int = 0
    """Bumped by every change of a role's grants or principals (the grants hash)."""
    list_quota: int = 150
    quota_window: float = 30.0
    _lists: defaultdict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))

    def __post_init__(self) -> None:
        for name, prefix in (
            ("targets", "ttcp"),
            ("aliases", "alt"),
            ("workers", "w"),
            ("credential-stores", "csst"),
            ("credentials", "credup"),
            ("roles", "r"),
            ("users", "u"),
            ("groups", "g"),
            ("managed-groups", "mgoidc"),
        ):
            self._collections[name] = Collection(prefix)

    # ------------------------------------------------------------------ knobs

    def client(self, **options: Any) -> BoundaryClient:
        """A real BoundaryClient whose network is this controller."""
        options.setdefault("backoff", 0.0)
        return BoundaryClient("http://fake-controller", transport=self.transport(), **options)

    async def login(self, **options: Any) -> BoundaryClient:
        """A client logged in as the admin, with a token of its own."""
        client = self.client(**options)
        await client.authenticate_password(AUTH_METHOD, LOGIN, PASSWORD)
        return client

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def throttle(self, count: int, retry_after: float = 0.0) -> None:
        """The next `count` calls answer 429 with this Retry-After."""
        self._throttled.extend([retry_after] * count)

    def expire_tokens(self) -> None:
        self._tokens.clear()

    def objects(self, collection: str) -> dict[str, JSON]:
        return self._collections[collection].items

    def report_config_tags(self, worker_id: str, tags: dict[str, list[str]]) -> None:
        """The config tags a running worker reports from its worker.hcl (no version change)."""
        worker = self._collections["workers"].items[worker_id]
        worker["config_tags"] = {k: list(v) for k, v in tags.items()}
        self._canonical(worker)

    def add_managed_group(self, name: str, auth_method_id: str = "amoidc_1234567890") -> str:
        """A managed group, as an OIDC auth method would fill it (the API cannot create one
        here); its id."""
        item = {"id": f"mgoidc_{next(self._ids)}", "version": 0, "name": name, "type": "oidc"}
        item.update(auth_method_id=auth_method_id, description="")
        return str(self._touch("managed-groups", item)["id"])

    def add_principals(self, *ids: str) -> None:
        """Users (u_...) and groups (g_...) with exactly these ids, in global, as if made
        elsewhere: tests name their principals in specs they write beforehand."""
        for principal_id in ids:
            collection = "groups" if principal_id.startswith("g_") else "users"
            item = {"id": principal_id, "version": 0, "name": "", "description": ""}
            item["scope_id"] = "global"
            if collection == "groups":
                item["member_ids"] = []
            self._touch(collection, item)

    @property
    def total_writes(self) -> int:
        return sum(self.writes.values())

    # ------------------------------------------------------------------ HTTP

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self._throttled:
            wait = self._throttled.pop(0)
            return httpx.Response(429, headers={"Retry-After": f"{wait:g}"})
        (self.reads if request.method == "GET" else self.writes)[request.method] += 1
        path = unquote(request.url.path.removeprefix("/v1/"))
        query = dict(request.url.params)
        body: JSON = json.loads(request.content) if request.content else {}
        try:
            if path != f"auth-methods/{AUTH_METHOD}:authenticate":
                self._authenticate(request)
            if (request.method == "GET" and "/" not in path.split(":")[0]) or "list-" in path:
                wait = self._list_quota(request.headers.get("Authorization", ""))
                if wait:
                    return httpx.Response(429, headers={"Retry-After": str(wait)})
            status, answer = self._route(request.method, path, query, body)
        except Answer as error:
            payload: JSON = {"kind": error.kind, "message": error.message}
            if error.fields:
                fields = [{"name": k, "description": v} for k, v in error.fields.items()]
                payload["details"] = {"request_fields": fields}
            return httpx.Response(error.status, json=payload)
        if status == 204:
            return httpx.Response(204)
        return httpx.Response(status, json=answer)

    def _list_quota(self, token: str) -> int:
        """Seconds to wait when this token has used its list calls for the window, else 0."""
        now, calls = time.monotonic(), self._lists[token]
        while calls and now - calls[0] >= self.quota_window:
            calls.popleft()
        if len(calls) >= self.list_quota:
            return max(1, math.ceil(self.quota_window - (now - calls[0])))
        calls.append(now)
        return 0

    def _authenticate(self, request: httpx.Request) -> str:
        """The caller's token id. An unknown or ended token is an anonymous caller, who may do
        nothing here: 403, as the real controller answers."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self._tokens:
            raise Answer(403, "PermissionDenied", "Forbidden.")
        return self._tokens[token]

    def _route(self, method: str, path: str, query: dict[str, str], body: JSON) -> tuple[int, Any]:
        name, _, rest = path.partition("/")
        resource_id, _, action = rest.partition(":")
        if ":" in name:  # workers:create:controller-led
            name, _, action = name.partition(":")
        if name == "auth-methods" and action == "authenticate":
            return 200, self._login(body)
        if name == "scopes":
            return 200, self._scopes(resource_id, query)
        if name == "users" and action == "list-resolvable-aliases":
            token = query.get("list_token", "")
            if token and not token.endswith(f"-grants-{self._grants_epoch}"):
                raise Answer(
                    400, "invalid list token", "grants have changed since list token was issued"
                )
            query = {**query, "list_token": token.rsplit("-grants-", 1)[0]} if token else query
            answer = self._listing("aliases", query, lambda a: bool(a["destination_id"]))
            answer["list_token"] += f"-grants-{self._grants_epoch}"
            return 200, answer
        if name == "auth-tokens" and resource_id in self._tokens.values():
            if method == "DELETE":
                self._tokens = {t: i for t, i in self._tokens.items() if i != resource_id}
                return 204, None
            return 200, {"id": resource_id, "user_id": USER, "auth_method_id": AUTH_METHOD}
        if name not in self._collections:
            raise Answer(404, "NotFound", NOT_FOUND)
        if method == "GET" and not resource_id:
            return 200, self._listing(name, query)
        if method == "POST" and not resource_id:
            return 200, self._create(name, body, action)
        item = self._get(name, resource_id, query_alias=action == "authorize-session")
        if method == "GET":
            return 200, item
        if method == "DELETE":
            self._delete(name, item["id"])
            return 204, None
        if action == "authorize-session":
            return 200, {"item": self._authorize(item)}
        if action in _TAG_ACTIONS and name == "workers":
            return 200, self._worker_tags(item, action, body)
        if method == "PATCH" and not set(body) - {"version"}:
            raise Answer(
                400,
                "InvalidArgument",
                "No valid fields included in the update mask.",
                {"update_mask": "No valid paths provided in the update mask."},
            )
        self._check_version(name, item, body, action)
        if method == "PATCH":
            return 200, self._update(name, item, body)
        if action == "set-credential-sources":
            item["brokered_credential_source_ids"] = list(body["brokered_credential_source_ids"])
            return 200, self._touch(name, item)
        if name == "roles" and action == "set-principals":
            item["principal_ids"] = self._principals(body.get("principal_ids") or [])
            self._grants_epoch += 1
            return 200, self._touch(name, item)
        if name == "roles" and action == "set-grants":
            item["grant_strings"] = _grants(body.get("grant_strings") or [])
            self._grants_epoch += 1
            return 200, self._touch(name, item)
        if name == "groups" and action == "set-members":
            item["member_ids"] = list(body.get("member_ids") or [])
            return 200, self._touch(name, item)
        raise Answer(400, "InvalidArgument", f"unsupported action {action!r}")

    # ------------------------------------------------------------------ objects

    def _touch(self, name: str, item: JSON) -> JSON:
        item["version"] = int(item.get("version", 0)) + 1
        item["updated_time"] = _now()
        collection = self._collections[name]
        collection.items[item["id"]] = item
        collection.changed[item["id"]] = next(self._seq)
        return item

    def _get(self, name: str, resource_id: str, query_alias: bool = False) -> JSON:
        items = self._collections[name].items
        if resource_id in items:
            return items[resource_id]
        if query_alias and "_" not in resource_id:
            for alias in self._collections["aliases"].items.values():
                if alias["value"] == resource_id and alias["destination_id"] in items:
                    return items[alias["destination_id"]]
        raise Answer(404, "NotFound", NOT_FOUND)

    def _check_version(self, name: str, item: JSON, body: JSON, action: str = "") -> None:
        if body.get("version") != item["version"] and action in MEMBERSHIP_ACTIONS:
            kind, method, doing = MEMBERSHIP_ACTIONS[action]
            where = f"iam.(Repository).{method}"
            raise Answer(
                500,
                "Internal",
                f"Unable to {doing} {kind}: {where}: db.DoTx: {where}: updated {kind} and 0 rows "
                "updated: search issue: error #1101.",
            )
        if body.get("version") != item["version"]:
            kind = name.rstrip("s").replace("-", " ").capitalize()
            raise Answer(
                404, "NotFound", f'{kind} "{item["id"]}" not found or incorrect version provided.'
            )

    def _unique(self, name: str, key: str, value: Any, scope: str | None, skip: str = "") -> None:
        for other in self._collections[name].items.values():
            same_scope = scope is None or other.get("scope_id") == scope
            if other["id"] != skip and same_scope and other.get(key) == value and value:
                raise Answer(400, "InvalidArgument", UNIQUE)

    def _create(self, name: str, body: JSON, action: str) -> JSON:
        prefix = self._collections[name].prefix
        if name == "credentials" and body.get("type") == "json":
            prefix = "credjson"
        new_id = f"{prefix}_{next(self._ids)}"
        item: JSON = {
            "id": new_id,
            "version": 0,
            "created_time": _now(),
            "name": body.get("name", ""),
            "description": body.get("description", ""),
        }
        if name == "targets":
            if body.get("scope_id") not in self.scopes:
                raise Answer(404, "NotFound", NOT_FOUND)
            _check_address(body.get("address", ""))
            self._unique(name, "name", body.get("name"), body["scope_id"])
            item.update(
                scope_id=body["scope_id"],
                type=body.get("type", "tcp"),
                address=body.get("address", ""),
                egress_worker_filter=body.get("egress_worker_filter", ""),
                session_max_seconds=body.get("session_max_seconds", 28800),
                session_connection_limit=body.get("session_connection_limit", -1),
                attributes=dict(body.get("attributes") or {}),
                brokered_credential_source_ids=[],
            )
        elif name == "aliases":
            self._unique(name, "value", body.get("value"), None)
            item.update(
                scope_id="global",
                type="target",
                value=body["value"],
                destination_id=body.get("destination_id", ""),
                attributes=dict(body.get("attributes") or {}),
            )
        elif name == "workers":
            if action != "create:controller-led":
                raise Answer(400, "InvalidArgument", "only controller-led creation is served")
            self._unique(name, "name", body.get("name"), None)
            item.update(
                scope_id="global",
                type="pki",
                release_version="",
                config_tags={},
                api_tags={},
                canonical_tags={},
            )
            created = self._touch(name, item)
            token = f"neslat_{next(self._ids)}fake"
            return {**created, "controller_generated_activation_token": token}
        elif name in ("roles", "users", "groups"):
            scope = self.scopes.get(body.get("scope_id", ""))
            if scope is None:
                raise Answer(404, "NotFound", NOT_FOUND)
            if name == "users" and scope["type"] == "project":
                raise Answer(
                    400,
                    "InvalidArgument",
                    "Error in provided request.",
                    {"scope_id": "Must be 'global' or a valid org scope id."},
                )
            self._unique(name, "name", body.get("name"), body["scope_id"])
            item.update(scope_id=body["scope_id"])
            if name == "roles":
                item.update(grant_scope_ids=["this"], principal_ids=[], grant_strings=[])
            if name == "groups":
                item.update(member_ids=[])
        elif name == "managed-groups":
            raise Answer(400, "InvalidArgument", "only OIDC and LDAP auth methods make these")
        elif name == "credential-stores":
            item.update(scope_id=body["scope_id"], type="static")
        elif name == "credentials":
            store = self._get("credential-stores", body["credential_store_id"])
            attributes = dict(body.get("attributes") or {})
            if body.get("type") == "json":
                item.update(credential_store_id=store["id"], type="json")
                self._set_object(item, attributes.get("object") or {})
            else:
                item.update(
                    credential_store_id=store["id"],
                    type=body.get("type", ""),
                    attributes={"username": attributes.get("username", "")},
                    _password=attributes.get("password", ""),
                )
        return self._public(self._touch(name, item))

    def _update(self, name: str, item: JSON, body: JSON) -> JSON:
        changes = {k: v for k, v in body.items() if k != "version"}
        if name == "targets" and "name" in changes:
            self._unique(name, "name", changes["name"], item["scope_id"], skip=item["id"])
        if name == "aliases" and "value" in changes:
            self._unique(name, "value", changes["value"], None, skip=item["id"])
        if name == "targets" and "address" in changes:
            _check_address(changes["address"])
        attributes = changes.pop("attributes", None)
        if name == "credentials" and attributes and item["type"] == "json":
            self._set_object(item, attributes.get("object") or {})
        elif name == "credentials" and attributes:
            if "password" in attributes:
                item["_password"] = attributes.pop("password")
            item["attributes"].update(attributes)
        elif attributes:
            item["attributes"] = {**item.get("attributes", {}), **attributes}
        item.update(changes)
        return self._public(self._touch(name, item))

    def _worker_tags(self, worker: JSON, action: str, body: JSON) -> JSON:
        if body.get("version") != worker["version"]:
            raise Answer(
                500,
                "Internal",
                "Unable to add worker tags in repo: server.(Repository).AddWorkerTags: "
                "updated worker version and 0 rows updated: db.Update: unknown, unknown: "
                "error #0",
            )
        tags: dict[str, list[str]] = {k: list(v) for k, v in worker["api_tags"].items()}
        change = body.get("api_tags") or {}
        if action == "set-worker-tags":
            tags = {k: list(v) for k, v in change.items()}
        for key, values in change.items():
            if action == "add-worker-tags":
                tags[key] = tags.get(key, []) + [v for v in values if v not in tags.get(key, [])]
            elif action == "remove-worker-tags":
                tags[key] = [v for v in tags.get(key, []) if v not in values]
                if not tags[key]:
                    del tags[key]
        worker["api_tags"] = tags
        self._canonical(worker)
        return self._public(self._touch("workers", worker))

    @staticmethod
    def _canonical(worker: JSON) -> None:
        merged: dict[str, list[str]] = {}
        for source in (worker.get("config_tags") or {}, worker.get("api_tags") or {}):
            for key, values in source.items():
                merged[key] = merged.get(key, []) + [
                    v for v in values if v not in merged.get(key, [])
                ]
        worker["canonical_tags"] = merged

    def _delete(self, name: str, resource_id: str) -> None:
        collection = self._collections[name]
        del collection.items[resource_id]
        collection.changed.pop(resource_id, None)
        collection.removed[resource_id] = next(self._seq)
        if name == "targets":
            for alias in list(self._collections["aliases"].items.values()):
                if alias["destination_id"] == resource_id:
                    alias["destination_id"] = ""
                    self._touch("aliases", alias)

    @staticmethod
    def _set_object(item: JSON, value: JSON) -> None:
        """A json credential's object, kept aside; reads show an HMAC of it only."""
        item["_object"] = dict(value)
        digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
        item["attributes"] = {"object_hmac": digest}

    @staticmethod
    def _public(item: JSON) -> JSON:
        return {k: v for k, v in item.items() if not k.startswith("_")}

    @classmethod
    def _listed(cls, name: str, item: JSON) -> JSON:
        """An item as a listing shows it: the real controller leaves a target's credential
        sources and a role's principals and grants out of listings (they are only on a read)."""
        public = cls._public(item)
        for key in LISTINGS_LEAVE_OUT.get(name, ()):
            public.pop(key, None)
        return public

    def _principals(self, ids: list[str]) -> list[str]:
        if any(not i.startswith(PRINCIPAL_PREFIXES) or len(i) < 4 for i in ids):
            raise Answer(
                400,
                "InvalidArgument",
                "Errors in provided fields.",
                {"principal_ids": "Must only have valid user, group, and/or managed group ids."},
            )
        known = {
            *BUILT_IN_USERS,
            USER,
            *(i for c in ("users", "groups", "managed-groups") for i in self.objects(c)),
        }
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise Answer(*UNKNOWN_PRINCIPAL)
        return sorted(set(ids))

    # ------------------------------------------------------------------ listings

    def _listing(self, name: str, query: dict[str, str], keep: Any = None) -> JSON:
        collection = self._collections[name]
        token = query.get("list_token")
        since = position = 0
        if token:
            match = re.fullmatch(rf"fake-{re.escape(name)}-(\d+)(?:-page-(\d+))?", token)
            if not match:
                raise Answer(400, "InvalidArgument", "Invalid request. list_token: invalid")
            since, position = int(match.group(1)), int(match.group(2) or 0)
        wanted = [
            self._listed(name, item)
            for item_id, item in collection.items.items()
            if collection.changed.get(item_id, 0) > since
            and (keep is None or keep(item))
            and self._matches(name, item, query)
        ]
        removed = [
            i for i, seq in collection.removed.items() if token and not position and seq > since
        ]
        size = int(query.get("page_size") or 1000)
        page = wanted[position : position + size]
        last = position + size >= len(wanted)
        head = max([since, *collection.changed.values(), *collection.removed.values()])
        next_token = (
            f"fake-{name}-{head}" if last else f"fake-{name}-{since}-page-{position + size}"
        )
        return {
            "items": page or None,
            "response_type": "complete" if last else "delta",
            "list_token": next_token,
            "removed_ids": removed or None,
            "est_item_count": len(wanted),
        }

    def _matches(self, name: str, item: JSON, query: dict[str, str]) -> bool:
        scope = query.get("scope_id")
        if name in SCOPED_LISTINGS and scope:
            recursive = query.get("recursive") == "true"
            if scope != item["scope_id"] and not (recursive and self._within(item, scope)):
                return False
        expression = query.get("filter", "")
        match = re.fullmatch(r'"/item/(\w+)" matches "(.*)"', expression)
        if match:
            return re.search(match.group(2), str(item.get(match.group(1), ""))) is not None
        match = re.fullmatch(r'"/item/(\w+)" == "(.*)"', expression)
        if match:
            return str(item.get(match.group(1), "")) == match.group(2)
        return not expression

    def _within(self, item: JSON, ancestor: str) -> bool:
        scope = self.scopes.get(item["scope_id"], {}).get("scope_id")
        while scope:
            if scope == ancestor:
                return True
            scope = self.scopes.get(scope, {}).get("scope_id")
        return False

    def _scopes(self, scope_id: str, query: dict[str, str]) -> JSON:
        if scope_id:
            if scope_id not in self.scopes:
                raise Answer(404, "NotFound", NOT_FOUND)
            return self.scopes[scope_id]
        parent = query.get("scope_id", "global")
        recursive = query.get("recursive") == "true"
        items = [
            s
            for s in self.scopes.values()
            if s["id"] != "global"
            and (s["scope_id"] == parent or (recursive and parent == "global"))
        ]
        return {"items": items, "response_type": "complete", "list_token": ""}

    # ------------------------------------------------------------------ auth and sessions

    def _login(self, body: JSON) -> JSON:
        attributes = body.get("attributes") or {}
        if (attributes.get("login_name"), attributes.get("password")) != (LOGIN, PASSWORD):
            raise Answer(401, "Unauthenticated", "Unable to authenticate.")
        token_id = f"at_{next(self._ids)}"
        token = f"{token_id}_fakesecret{next(self._ids)}"
        self._tokens[token] = token_id
        return {
            "attributes": {
                "id": token_id,
                "token": token,
                "user_id": USER,
                "auth_method_id": AUTH_METHOD,
                "expiration_time": (
                    datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=7)
                ).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        }

    def _authorize(self, target: JSON) -> JSON:
        session_id = f"s_{next(self._ids)}"
        data = b"".join(
            [
                _field(10, session_id.encode()),
                _field(20, target["id"].encode()),
                _field(80, b"tcp"),
                _field(102, int(target["attributes"].get("default_port", 0))),
                _field(120, b"fake-certificate-der"),
                _field(130, bytes(64)),
                _field(141, f"tcp://{target['address']}".encode()),
                _field(150, _field(10, self.worker_address.encode())),
            ]
        )
        credentials = []
        for source in target.get("brokered_credential_source_ids") or []:
            stored = self._collections["credentials"].items.get(source)
            if stored is not None:
                if stored["type"] == "json":
                    secret = dict(stored["_object"])
                else:
                    secret = {
                        "username": stored["attributes"]["username"],
                        "password": stored["_password"],
                    }
                credentials.append(
                    {
                        "credential_source": {
                            "id": source,
                            "credential_store_id": stored["credential_store_id"],
                            "credential_type": stored["type"],
                        },
                        "secret": {"decoded": secret},
                        "credential": secret,
                    }
                )
        answer: JSON = {
            "session_id": session_id,
            "target_id": target["id"],
            "scope": {"id": target["scope_id"]},
            "type": "tcp",
            "endpoint": f"tcp://{target['address']}",
            "endpoint_port": int(target["attributes"].get("default_port", 0)),
            "authorization_token": base58_encode(data),
        }
        if credentials:  # the controller leaves out empty lists
            answer["credentials"] = credentials
        return answer
