"""The BoundaryPKIWorker spec as pydantic models (camelCase aliases, as in the CRD)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from boundary_operator.naming import RESERVED_TAGS

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
MAX_DRAIN_SECONDS = 24 * 3600


class SpecModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class SecretRef(SpecModel):
    name: str
    key: str | None = None


class Registration(SpecModel):
    hcp_boundary_cluster_id: str | None = Field(default=None, alias="hcpBoundaryClusterID")
    initial_upstreams: list[str] | None = None
    controller_generated_activation_token: str | None = Field(default=None, repr=False)
    activation_token_secret_ref: SecretRef | None = None

    @property
    def mode(self) -> Literal["automatic", "plain-text", "secret-ref"]:
        if self.controller_generated_activation_token:
            return "plain-text"
        if self.activation_token_secret_ref:
            return "secret-ref"
        return "automatic"


class Quantities(SpecModel):
    cpu: str | None = None
    memory: str | None = None


class Storage(SpecModel):
    storage_class_name: str | None = None
    size: str = "1Gi"


class Resources(SpecModel):
    requests: Quantities = Field(default_factory=Quantities)
    limits: Quantities = Field(default_factory=Quantities)
    storage: Storage = Field(default_factory=Storage)


class ServiceSpec(SpecModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    node_port: int | None = None
    annotations: dict[str, str] = Field(default_factory=dict)


class PodSecurity(SpecModel):
    run_as_user: int | None = None
    run_as_group: int | None = None
    fs_group: int | None = None


class PodTemplate(SpecModel):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    affinity: dict[str, Any] | None = None
    priority_class_name: str | None = None
    security_context: PodSecurity = Field(default_factory=PodSecurity)
    env: list[dict[str, Any]] = Field(default_factory=list)


def duration_seconds(value: str) -> int:
    """Seconds of a duration written as the CRD allows: hours, minutes and seconds in that
    order ("90s", "5m", "1h30m"). Raises ValueError."""
    match = _DURATION.match(value)
    if not value or match is None:
        raise ValueError(f"{value!r} is not a duration such as 90s, 5m or 1h30m")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


class Drain(SpecModel):
    timeout: str = "5m"
    """How long a stopping worker may keep serving its open connections before it is stopped."""

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: str) -> str:
        if duration_seconds(value) > MAX_DRAIN_SECONDS:
            raise ValueError(f"{value!r} is longer than 24h")
        return value

    @property
    def timeout_seconds(self) -> int:
        return duration_seconds(self.timeout)


class WorkerSpec(SpecModel):
    replicas: int = 1
    image: str | None = None
    public_address: str | None = None
    registration: Registration
    resources: Resources = Field(default_factory=Resources)
    tags: dict[str, str | list[str]] = Field(default_factory=dict)
    service: ServiceSpec = Field(default_factory=ServiceSpec)
    pod_template: PodTemplate = Field(default_factory=PodTemplate)
    drain: Drain = Field(default_factory=Drain)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        reserved = sorted(set(value) & set(RESERVED_TAGS))
        if reserved:
            raise ValueError(f"keys {', '.join(reserved)} are reserved for the operator")
        return value

    def normalised_tags(self) -> dict[str, list[str]]:
        return {k: [v] if isinstance(v, str) else list(v) for k, v in self.tags.items()}
