"""The BoundaryKubernetesAccess spec as pydantic models (camelCase aliases, as in the CRD). The
CRD rejects bad specs at admission; these models are the operator's own check of what it acts
on, with messages that name the field."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

MIN_LIFETIME = 600
"""The TokenRequest API's minimum (10 minutes)."""
MAX_LIFETIME = 86400
DEFAULT_LIFETIME = "1h"
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def duration_seconds(text: str) -> int:
    """Seconds in a duration written as Kubernetes and CEL write them, restricted to hours,
    minutes and seconds ("1h", "90m", "1h30m", "600s")."""
    match = _DURATION.fullmatch(text)
    if not text or match is None:
        raise ValueError(f"{text!r} is not a duration like 1h, 30m or 1h30m")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def alias_problem(value: str) -> str | None:
    """Boundary's rule for alias values: DNS-like lowercase labels, under 254 characters, the
    last label not all digits."""
    labels = value.split(".")
    if not value or len(value) > 253 or not all(_LABEL.match(label) for label in labels):
        return "must be lowercase DNS labels (letters, digits, '-') joined by '.'"
    if labels[-1].isdigit():
        return "must not end in an all-digit label"
    return None


class SpecModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class RoleRef(SpecModel):
    kind: Literal["Role", "ClusterRole"]
    name: str = Field(min_length=1)


class WorkerSelector(SpecModel):
    name: str | None = None
    """A BoundaryPKIWorker of the resource's namespace."""
    filter: str | None = None
    """A Boundary egress worker filter, as it is."""

    @model_validator(mode="after")
    def _exactly_one(self) -> WorkerSelector:
        if (self.name is None) == (self.filter is None):
            raise ValueError("give exactly one of name and filter")
        return self


class Principals(SpecModel):
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    managed_groups: list[str] = Field(default_factory=list)

    def ids(self) -> list[str]:
        return sorted({*self.users, *self.groups, *self.managed_groups})

    @model_validator(mode="after")
    def _well_formed(self) -> Principals:
        checks = (
            ("users", self.users, ("u_",)),
            ("groups", self.groups, ("g_",)),
            ("managedGroups", self.managed_groups, ("mgoidc_", "mgldap_")),
        )
        for field, ids, prefixes in checks:
            bad = [i for i in ids if not i.startswith(prefixes)]
            if bad:
                raise ValueError(
                    f"{field}: {bad[0]!r} is not an id starting {' or '.join(prefixes)}"
                )
        if not self.ids():
            raise ValueError("name at least one user, group or managed group")
        return self


class KubeAccessSpec(SpecModel):
    alias: str
    role_ref: RoleRef
    cluster_wide: bool = False
    """Bind cluster-wide (a ClusterRoleBinding) instead of in the resource's namespace."""
    principals: Principals
    scope: str | None = None
    """Boundary project (id or name); default: the operator's default scope."""
    worker: WorkerSelector | None = None
    token_lifetime: str = DEFAULT_LIFETIME

    @field_validator("alias")
    @classmethod
    def _alias(cls, value: str) -> str:
        problem = alias_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("token_lifetime")
    @classmethod
    def _lifetime(cls, value: str) -> str:
        seconds = duration_seconds(value)
        if not MIN_LIFETIME <= seconds <= MAX_LIFETIME:
            raise ValueError("must be between 10m and 24h")
        return value

    @model_validator(mode="after")
    def _role_in_namespace(self) -> KubeAccessSpec:
        if self.cluster_wide and self.role_ref.kind == "Role":
            raise ValueError(
                "clusterWide: a Role binds only in its own namespace; use a ClusterRole"
            )
        return self

    @property
    def lifetime_seconds(self) -> int:
        return duration_seconds(self.token_lifetime)


def spec_problems(raw: object) -> tuple[KubeAccessSpec | None, str]:
    """The spec, or None and every problem, each naming its field (spec.x.y: why)."""
    from pydantic import ValidationError

    try:
        return KubeAccessSpec.model_validate(raw or {}), ""
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in ("spec", *error["loc"]))
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message}")
        return None, "; ".join(problems)
