"""Kubernetes credentials as users and pods really get them, for tests of the operator's client:
a kubeconfig whose user is an exec credential plugin (minting ServiceAccount tokens through the
TokenRequest API, as cloud plugins mint theirs), a pod's service-account directory, and
short-lived tokens.

TokenRequest refuses lifetimes under 10 minutes, so a test that must outlive a token's expiry
signs its own with the stack's service-account key, exactly as the apiserver signs the ones it
issues (same issuer, audience, key id and bound-account claims); the apiserver checks them like
any other."""

from __future__ import annotations

import base64
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from boundary_devstack.clients import Kubectl
from boundary_devstack.stack import SERVICE_ACCOUNT_ISSUER, StackEnv

_PLUGIN = """\
import datetime, json, pathlib, subprocess, sys
runs = pathlib.Path({runs!r})
runs.write_text(str(int(runs.read_text() or 0) + 1) if runs.exists() else "1")
token = subprocess.run(
    {argv!r}, capture_output=True, text=True, check=True, timeout=60
).stdout.strip()
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds={seconds})
print(json.dumps({{
    "apiVersion": "client.authentication.k8s.io/v1",
    "kind": "ExecCredential",
    "status": {{"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}},
}}))
"""


def _cluster(kubectl: Kubectl) -> dict[str, object]:
    config = json.loads(kubectl("config", "view", "--raw", "--minify", "-o", "json"))
    cluster: dict[str, object] = config["clusters"][0]["cluster"]
    return cluster


def exec_plugin_kubeconfig(
    kubectl: Kubectl, namespace: str, service_account: str, directory: Path, seconds: int = 600
) -> Path:
    """A kubeconfig whose user is an exec plugin: a small script that mints a token for the
    ServiceAccount through the TokenRequest API (`kubectl create token`, with the stack's admin
    credentials) on every run, and counts its runs in `directory/plugin-runs`. The kubeconfig
    itself holds no credential."""
    directory.mkdir(parents=True, exist_ok=True)
    argv = [
        kubectl.binary,
        "--kubeconfig",
        kubectl.stack.values["KUBECONFIG"],
        "create",
        "token",
        service_account,
        "-n",
        namespace,
        f"--duration={seconds}s",
    ]
    script = directory / "mint-token.py"
    script.write_text(
        _PLUGIN.format(runs=str(directory / "plugin-runs"), argv=argv, seconds=seconds)
    )
    path = directory / "exec.kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "exec",
                "clusters": [{"name": "stack", "cluster": _cluster(kubectl)}],
                "users": [
                    {
                        "name": service_account,
                        "user": {
                            "exec": {
                                "apiVersion": "client.authentication.k8s.io/v1",
                                "command": sys.executable,
                                "args": [str(script)],
                                "interactiveMode": "Never",
                            }
                        },
                    }
                ],
                "contexts": [
                    {"name": "exec", "context": {"cluster": "stack", "user": service_account}}
                ],
            }
        )
    )
    path.chmod(0o600)
    return path


def plugin_runs(directory: Path) -> int:
    runs = directory / "plugin-runs"
    return int(runs.read_text()) if runs.exists() else 0


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def short_lived_token(
    kubectl: Kubectl, stack: StackEnv, namespace: str, service_account: str, seconds: int
) -> str:
    """A bound ServiceAccount token that expires in `seconds`, signed with the stack's
    service-account key as the apiserver signs TokenRequest tokens."""
    uid = kubectl.get_json("serviceaccount", service_account, "-n", namespace)["metadata"]["uid"]
    key_pem = (Path(stack.values["STACK_WORK_DIR"]) / "pki" / "sa.key").read_bytes()
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    header = {"alg": "RS256", "kid": _b64url(hashlib.sha256(public).digest())}
    claims = {
        "iss": SERVICE_ACCOUNT_ISSUER,
        "aud": [SERVICE_ACCOUNT_ISSUER],
        "sub": f"system:serviceaccount:{namespace}:{service_account}",
        "iat": now,
        "nbf": now,
        "exp": now + seconds,
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": service_account, "uid": uid},
        },
    }
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def write_service_account_dir(
    directory: Path, kubectl: Kubectl, namespace: str, token: str
) -> Path:
    """What the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount: the token
    (replaced atomically, as the kubelet rotates it), the cluster CA and the namespace."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _cluster(kubectl)["certificate-authority"]
    (directory / "ca.crt").write_bytes(Path(str(ca)).read_bytes())
    (directory / "namespace").write_text(namespace)
    fresh = directory / ".token.new"
    fresh.write_text(token)
    fresh.replace(directory / "token")
    return directory


def in_cluster_command(service_account_dir: Path, argv: list[str]) -> list[str]:
    """`argv` as a pod would run it: in a mount namespace of its own where
    /var/run/secrets/kubernetes.io/serviceaccount is `service_account_dir` (a private tmpfs
    over /run, so the machine's own /run is untouched). Needs root."""
    mount = "/run/secrets/kubernetes.io/serviceaccount"
    script = (
        f"mount -t tmpfs tmpfs /run && mkdir -p {mount} && "
        f'mount --bind {shlex.quote(str(service_account_dir))} {mount} && exec "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]
