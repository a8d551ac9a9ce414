"""An in-memory apiserver behind the operator's KubePort, with the semantics the operator relies
on, each checked against the real apiserver by the contract tests
(tests/test_kube_contract.py and tests/e2e/test_kube_contract.py):

- server-side apply creates or updates; an apply that changes nothing leaves resourceVersion as
  it is; each field is owned by the managers that applied it (applying the same value shares
  it), and applying a field another manager owns with a different value is a 409 Conflict
  unless forced (which takes it over); fields a manager stops applying go, unless another
  manager owns them too;
- a merge patch carrying a stale metadata.resourceVersion is a 409 Conflict;
- create of a name that exists is a 409 AlreadyExists;
- get of what does not exist is None, delete of it False;
- list filters by namespace and label selector (k=v, comma-separated);
- a spec change bumps metadata.generation;
- the TokenRequest API (`create_subresource` of a ServiceAccount's `token`): at least 10
  minutes (400 otherwise), a missing account or bound Secret is a 404, a bound Secret of another
  uid a 409; `authenticate` says whose a token is, and a token is refused once it expired or
  its ServiceAccount or bound Secret is gone (or was made again, with a new uid).

`writes` counts the write calls by verb, as the operator's metrics do; `events` keeps the Events
posted. `run_stateful_sets()` plays the StatefulSet controller and kubelet: pods appear Running
and Ready for each ordinal and go above the replica count (a pod marked stopping goes, as a
drained pod does), and the StatefulSet's status says the rollout is done."""

from __future__ import annotations

import copy
import datetime
import itertools
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from boundary_operator.kube import FIELD_MANAGER, KINDS, KubeError, KubeNotFound, resource_path

Manifest = dict[str, Any]
Key = tuple[str, str | None, str]
Path = tuple[str, ...]

_SERVER_FIELDS = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")


def _leaves(value: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Leaf fields by path; lists are atomic leaves (the operator's lists are replaced whole),
    and an empty mapping owns nothing."""
    if isinstance(value, dict):
        out: dict[Path, Any] = {}
        for key, item in value.items():
            out.update(_leaves(item, (*prefix, key)))
        return out
    return {prefix: value}


def _set(target: Manifest, path: Path, value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = copy.deepcopy(value)


def _unset(target: Manifest, path: Path) -> None:
    trail = []
    for key in path[:-1]:
        if key not in target:
            return
        trail.append((target, key))
        target = target[key]
    target.pop(path[-1], None)
    for parent, key in reversed(trail):
        if parent[key] == {}:
            del parent[key]


def _plural(kind: str) -> str:
    """The resource's plural with its group, as the apiserver names it in messages
    (`leases.coordination.k8s.io`)."""
    prefix, plural = KINDS[kind]
    group = prefix.split("/")[1] if prefix.startswith("apis/") else ""
    return f"{plural}.{group}" if group else plural


def _merge_patch(target: Manifest, patch: Manifest) -> Manifest:
    """RFC 7386."""
    out = copy.deepcopy(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_patch(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class FakeKube:
    field_manager: str = FIELD_MANAGER
    objects: dict[Key, Manifest] = field(default_factory=dict)
    owners: dict[Key, dict[Path, set[str]]] = field(default_factory=dict)
    events: list[Manifest] = field(default_factory=list)
    writes: Counter[str] = field(default_factory=Counter)
    reads: Counter[str] = field(default_factory=Counter)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    tokens: dict[str, tuple[Key, str, Key, str, datetime.datetime]] = field(
        default_factory=dict, repr=False
    )
    """Issued tokens: (account, its uid, bound object, its uid, expiry)."""
    now: Any = field(default=lambda: datetime.datetime.now(datetime.UTC))
    """The clock tokens are issued and checked by (a test may move it)."""

    def as_manager(self, manager: str) -> FakeKube:
        """The same apiserver, spoken to by another field manager."""
        other = copy.copy(self)
        other.field_manager = manager
        return other

    @property
    def total_writes(self) -> int:
        return sum(self.writes.values())

    # ------------------------------------------------------------------ KubePort

    async def apply(self, manifest: Manifest, *, force: bool = True) -> Manifest:
        self.writes["apply"] += 1
        key = self._key(manifest)
        current = self.objects.get(key)
        owners = self.owners.setdefault(key, {})
        sent = {
            p: v
            for p, v in _leaves(manifest).items()
            if not (p[:1] == ("metadata",) and len(p) > 1 and p[1] in _SERVER_FIELDS)
        }
        body = copy.deepcopy(current) if current else {}
        live = _leaves(body)
        me = self.field_manager
        conflicts = [p for p, v in sent.items() if owners.get(p, set()) - {me} and live.get(p) != v]
        if conflicts and not force:
            fields = ", ".join(".".join(p) for p in conflicts)
            others = ", ".join(sorted(owners[conflicts[0]] - {me}))
            raise KubeError(
                409,
                "Conflict",
                f'Apply failed with {len(conflicts)} conflict(s): with "{others}": {fields}',
                "PATCH",
                self._path(key),
            )
        # Fields this manager stops applying go, unless another manager owns them too.
        for path in [p for p, m in owners.items() if me in m and p not in sent]:
            owners[path].discard(me)
            if not owners[path]:
                _unset(body, path)
                del owners[path]
        for path, value in sent.items():
            # Forced or changed: ours alone; the same value: shared with its other managers.
            shared = live.get(path) == value and not force
            owners[path] = (owners.get(path, set()) | {me}) if shared else {me}
            _set(body, path, value)
        return self._store(key, body, current)

    async def create(self, manifest: Manifest) -> Manifest:
        self.writes["create"] += 1
        key = self._key(manifest)
        if key in self.objects:
            kind, _, name = key
            raise KubeError(
                409,
                "AlreadyExists",
                f'{_plural(kind)} "{name}" already exists',
                "POST",
                self._path(key),
            )
        return self._store(key, copy.deepcopy(manifest), None)

    async def get(self, kind: str, namespace: str | None, name: str) -> Manifest | None:
        self.reads["get"] += 1
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    async def list(
        self, kind: str, namespace: str | None, *, label_selector: str = ""
    ) -> list[Manifest]:
        self.reads["list"] += 1
        wanted = dict(p.split("=", 1) for p in label_selector.split(",") if p)
        return [
            copy.deepcopy(m)
            for (k, ns, _), m in sorted(self.objects.items(), key=lambda i: str(i[0]))
            if k == kind
            and (namespace is None or ns == namespace)
            and all((m["metadata"].get("labels") or {}).get(a) == b for a, b in wanted.items())
        ]

    async def delete(self, kind: str, namespace: str | None, name: str) -> bool:
        self.writes["delete"] += 1
        key = (kind, namespace, name)
        self.owners.pop(key, None)
        return self.objects.pop(key, None) is not None

    async def post_event(
        self, involved: Manifest, event_type: str, reason: str, message: str
    ) -> None:
        self.writes["event"] += 1
        meta = involved["metadata"]
        self.events.append(
            {
                "involvedObject": {"kind": involved.get("kind"), "name": meta["name"]},
                "type": event_type,
                "reason": reason,
                "message": message,
            }
        )

    async def patch_merge(
        self, kind: str, namespace: str | None, name: str, patch: Manifest, sub: str = ""
    ) -> Manifest:
        self.writes["patch"] += 1
        key = (kind, namespace, name)
        current = self.objects.get(key)
        if current is None:
            raise KubeNotFound(
                404, "NotFound", f'{kind} "{name}" not found', "PATCH", self._path(key)
            )
        expected = (patch.get("metadata") or {}).get("resourceVersion")
        if expected is not None and expected != current["metadata"]["resourceVersion"]:
            raise KubeError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {kind} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
                "PATCH",
                self._path(key),
            )
        return self._store(key, _merge_patch(current, patch), current)

    async def create_subresource(
        self, kind: str, namespace: str, name: str, sub: str, body: Manifest
    ) -> Manifest:
        self.writes["create"] += 1
        path = resource_path(kind, namespace, name, sub)
        if (kind, sub) != ("ServiceAccount", "token"):
            raise KubeError(
                404, "NotFound", "the server could not find the requested resource", "POST", path
            )
        account = self.objects.get((kind, namespace, name))
        if account is None:
            raise KubeNotFound(404, "NotFound", f'serviceaccounts "{name}" not found', "POST", path)
        spec = body.get("spec") or {}
        seconds = int(spec.get("expirationSeconds") or 3600)
        if seconds < 600:
            raise KubeError(
                422,
                "Invalid",
                f'TokenRequest.authentication.k8s.io "{name}" is invalid: spec.expirationSeconds: '
                f"Invalid value: {seconds}: may not specify a duration less than 10 minutes",
                "POST",
                path,
            )
        ref = spec.get("boundObjectRef") or {}
        bound_key: Key = (str(ref.get("kind")), namespace, str(ref.get("name")))
        bound = self.objects.get(bound_key)
        if bound is None:
            raise KubeNotFound(
                404, "NotFound", f'secrets "{ref.get("name")}" not found', "POST", path
            )
        if ref.get("uid") and ref["uid"] != bound["metadata"]["uid"]:
            raise KubeError(
                409,
                "Conflict",
                f"the UID in the bound object reference ({ref['uid']}) does not match the UID in "
                f"record. The object might have been deleted and then recreated",
                "POST",
                path,
            )
        expires = self.now() + datetime.timedelta(seconds=seconds)
        token = f"fake-jwt.{secrets.token_urlsafe(24)}.sig"
        self.tokens[token] = (
            (kind, namespace, name),
            account["metadata"]["uid"],
            bound_key,
            bound["metadata"]["uid"],
            expires,
        )
        return {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {**spec, "expirationSeconds": seconds},
            "status": {
                "token": token,
                "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }

    async def aclose(self) -> None:
        return None

    def authenticate(self, token: str) -> str | None:
        """Whose token it is (system:serviceaccount:NS:NAME), or None when it is refused."""
        issued = self.tokens.get(token)
        if issued is None:
            return None
        account_key, account_uid, bound_key, bound_uid, expires = issued
        account, bound = self.objects.get(account_key), self.objects.get(bound_key)
        alive = (
            account is not None
            and account["metadata"]["uid"] == account_uid
            and bound is not None
            and bound["metadata"]["uid"] == bound_uid
            and self.now() < expires
        )
        _, namespace, name = account_key
        return f"system:serviceaccount:{namespace}:{name}" if alive else None

    # ------------------------------------------------------------------ test helpers

    def put(self, manifest: Manifest) -> Manifest:
        """Create or replace an object as another client would (kubectl apply), uncounted."""
        key = self._key(manifest)
        return self._store(key, copy.deepcopy(manifest), self.objects.get(key))

    def remove(self, kind: str, namespace: str | None, name: str) -> None:
        self.objects.pop((kind, namespace, name), None)
        self.owners.pop((kind, namespace, name), None)

    def run_stateful_sets(self) -> None:
        """The StatefulSet controller and the kubelet: Running pods for each ordinal."""
        for (kind, namespace, name), sts in list(self.objects.items()):
            if kind != "StatefulSet":
                continue
            replicas = int(sts["spec"].get("replicas", 0))
            labels = sts["spec"]["template"]["metadata"]["labels"]
            for (k, ns, pod), body in list(self.objects.items()):
                if k == "Pod" and ns == namespace and pod.startswith(f"{name}-"):
                    suffix = pod.rsplit("-", 1)[1]
                    stopping = body["metadata"].get("deletionTimestamp")
                    if stopping or (suffix.isdigit() and int(suffix) >= replicas):
                        self.remove("Pod", namespace, pod)
            for ordinal in range(replicas):
                pod = f"{name}-{ordinal}"
                if ("Pod", namespace, pod) not in self.objects:
                    self.put(
                        {
                            "apiVersion": "v1",
                            "kind": "Pod",
                            "metadata": {
                                "name": pod,
                                "namespace": namespace,
                                "labels": {**labels, "apps.kubernetes.io/pod-index": str(ordinal)},
                            },
                            "status": {
                                "phase": "Running",
                                "conditions": [{"type": "Ready", "status": "True"}],
                            },
                        }
                    )
            generation = sts["metadata"].get("generation", 1)
            status = {
                "observedGeneration": generation,
                "currentRevision": f"{name}-{generation}",
                "updateRevision": f"{name}-{generation}",
            }
            if sts.get("status") != status:
                self.put({**sts, "status": status})

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _key(manifest: Manifest) -> Key:
        meta = manifest["metadata"]
        return (manifest["kind"], meta.get("namespace"), meta["name"])

    @staticmethod
    def _path(key: Key) -> str:
        kind, namespace, name = key
        return resource_path(kind, namespace, name) if kind != "Namespace" else name

    def _store(self, key: Key, body: Manifest, current: Manifest | None) -> Manifest:
        meta = body.setdefault("metadata", {})
        if current is not None:
            old = current["metadata"]
            for name in ("uid", "creationTimestamp", "generation"):
                if name in old:
                    meta[name] = old[name]
            meta["resourceVersion"] = old["resourceVersion"]
            if body == current:
                return copy.deepcopy(current)  # nothing changed: same resourceVersion
            if body.get("spec") != current.get("spec"):
                meta["generation"] = int(old.get("generation", 1)) + 1
        else:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
            meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[key] = body
        return copy.deepcopy(body)
