"""Operator configuration: environment variables, each with a matching command-line flag."""

from __future__ import annotations

import os
import re
import socket
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_WORKER_IMAGE = "hashicorp/boundary:0.21.1"


class OperatorSettings(BaseSettings):
    """Each field is read from the environment variable in its alias."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore")

    boundary_addr: str = Field(default="", alias="BOUNDARY_ADDR")
    boundary_ca_cert: str = Field(default="", alias="BOUNDARY_CACERT")
    boundary_auth_method_id: str = Field(default="", alias="BOUNDARY_AUTH_METHOD_ID")
    boundary_login_name: str = Field(default="", alias="BOUNDARY_LOGIN_NAME")
    boundary_password: SecretStr = Field(default=SecretStr(""), alias="BOUNDARY_PASSWORD")
    boundary_token: SecretStr = Field(default=SecretStr(""), alias="BOUNDARY_TOKEN")
    cluster_name: str = Field(default="k8s", alias="BOUNDARY_OPERATOR_CLUSTER_NAME")
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="BOUNDARY_OPERATOR_NAMESPACES"
    )
    """Watched namespaces; empty means every namespace (cluster-wide)."""
    worker_image: str = Field(default=DEFAULT_WORKER_IMAGE, alias="BOUNDARY_OPERATOR_WORKER_IMAGE")
    cluster_domain: str = Field(default="cluster.local", alias="BOUNDARY_OPERATOR_CLUSTER_DOMAIN")
    resync_seconds: float = Field(default=60.0, alias="BOUNDARY_OPERATOR_RESYNC_SECONDS")
    """How often Services are fully resynced (drift repair, orphans, Secret changes)."""
    default_scope: str = Field(default="", alias="BOUNDARY_OPERATOR_DEFAULT_SCOPE")
    """Project (id or name) for Services without a scope annotation."""
    alias_template: str = Field(
        default="{service}.{namespace}.{cluster}", alias="BOUNDARY_OPERATOR_ALIAS_TEMPLATE"
    )
    metrics_port: int = Field(default=0, ge=0, le=65535, alias="BOUNDARY_OPERATOR_METRICS_PORT")
    """Prometheus /metrics port; 0 turns it off."""
    health_port: int = Field(default=0, ge=0, le=65535, alias="BOUNDARY_OPERATOR_HEALTH_PORT")
    """Liveness /healthz port; 0 turns it off."""
    target_address: Literal["dns", "clusterip"] = Field(
        default="dns", alias="BOUNDARY_OPERATOR_TARGET_ADDRESS"
    )
    kube_api_address: str = Field(
        default="kubernetes.default.svc:443", alias="BOUNDARY_OPERATOR_KUBE_API_ADDRESS"
    )
    """host:port of the apiserver as the workers reach it: the target of every
    BoundaryKubernetesAccess. In a cluster, the `kubernetes` Service; the dev stack overrides."""
    kube_api_server_name: str = Field(
        default="kubernetes.default.svc", alias="BOUNDARY_OPERATOR_KUBE_API_SERVER_NAME"
    )
    """The name clients check the apiserver's certificate against (kubeconfig
    tls-server-name): one of the certificate's names, as the client dials an alias."""
    leader_election_lease: str = Field(default="", alias="BOUNDARY_OPERATOR_LEADER_ELECTION_LEASE")
    """`<namespace>/<name>` of the coordination.k8s.io Lease replicas elect their leader on;
    empty: no election, this process operates alone."""
    lease_seconds: float = Field(default=8.0, ge=2, le=300, alias="BOUNDARY_OPERATOR_LEASE_SECONDS")
    """The Lease duration: a standby takes over at most this plus a quarter of it after the
    leader's last renewal."""
    pod_id: str = Field(default="", alias="POD_ID")
    """This replica's identity in the Lease (the chart sets the pod's name; kopf reads the same
    variable); default: host name and process id."""

    @field_validator("leader_election_lease")
    @classmethod
    def _lease(cls, value: str) -> str:
        if value and not re.fullmatch(
            r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?/[a-z0-9]([a-z0-9.-]*[a-z0-9])?", value
        ):
            raise ValueError(
                "BOUNDARY_OPERATOR_LEADER_ELECTION_LEASE must be <namespace>/<name> "
                f"(lowercase names), not {value!r}"
            )
        return value

    @property
    def identity(self) -> str:
        return self.pod_id or f"{socket.gethostname()}-{os.getpid()}"

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [n.strip() for n in value.split(",") if n.strip()]
        return value

    @field_validator("cluster_name")
    @classmethod
    def _cluster_name(cls, value: str) -> str:
        value = value.lower()
        if not value or not all(c.isalnum() or c == "-" for c in value) or len(value) > 40:
            raise ValueError("BOUNDARY_OPERATOR_CLUSTER_NAME must be 1-40 letters, digits or '-'")
        return value

    @field_validator("kube_api_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("BOUNDARY_OPERATOR_KUBE_API_ADDRESS must be host:port")
        return value

    @property
    def kube_api_host_port(self) -> tuple[str, int]:
        host, _, port = self.kube_api_address.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def has_controller_credentials(self) -> bool:
        password_login = all(
            (
                self.boundary_auth_method_id,
                self.boundary_login_name,
                self.boundary_password.get_secret_value(),
            )
        )
        return bool(self.boundary_addr) and (
            password_login or bool(self.boundary_token.get_secret_value())
        )
