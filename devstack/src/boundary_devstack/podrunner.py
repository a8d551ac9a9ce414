"""`make pod-run POD=<namespace>/<pod>`: run a Pod's worker container as a local process, the way
a kubelet would, because this machine has no container runtime.

- Environment: literal values with $(VAR) expansion, fieldRef (metadata.name,
  metadata.namespace, metadata.labels['...'], status.podIP), secretKeyRef and configMapKeyRef.
- Volumes: ConfigMap and Secret volumes are written to a temporary directory; emptyDir is a
  temporary directory; a PersistentVolumeClaim maps to a directory keyed by the claim's uid under
  the state directory, so it survives restarts of the runner and a new claim starts empty.
- Mounts: a private mount namespace (unshare) bind-mounts each volume (subPath / subPathExpr
  honoured) at its mountPath, over a tmpfs at /opt/boundary, so the container's paths are real.
- Network: the pod gets a loopback address of its own (127.100.x.y), as a CNI would give it an
  IP. The runner binds the worker's wildcard listeners to that address and, acting as the
  cluster DNS, points a `*.svc.*` public address at it, so replicas run side by side.

It runs in the foreground until interrupted, and passes SIGINT/SIGTERM to the worker.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boundary_devstack.clients import CommandFailed, Kubectl
from boundary_devstack.stack import StackEnv

MOUNT_ROOT = "/opt/boundary"
POD_CHECK_SECONDS = 2.0
RUNNER_BIN = f"{MOUNT_ROOT}/.runner-bin"
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class PodRunError(RuntimeError):
    pass


def pod_address(namespace: str, pod: str) -> str:
    digest = hashlib.sha256(f"{namespace}/{pod}".encode()).digest()
    return f"127.100.{digest[0]}.{digest[1] % 254 + 1}"


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion: known names are replaced, unknown ones stay as written."""
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)


@dataclass
class PodRunner:
    kubectl: Kubectl
    namespace: str
    pod_name: str
    state_dir: Path
    bin_dir: Path
    container_name: str | None = None
    work: Path = field(init=False)

    def __post_init__(self) -> None:
        self.pod: dict[str, Any] = self.kubectl.get_json("pod", self.pod_name, "-n", self.namespace)
        self.address = pod_address(self.namespace, self.pod_name)
        self.work = Path(tempfile.mkdtemp(prefix=f"pod-{self.pod_name}-"))

    # ------------------------------------------------------------------ resolution

    def container(self) -> dict[str, Any]:
        containers: list[dict[str, Any]] = self.pod["spec"]["containers"]
        if self.container_name:
            for c in containers:
                if c["name"] == self.container_name:
                    return c
            raise PodRunError(f"pod {self.pod_name} has no container {self.container_name!r}")
        return containers[0]

    def _secret_data(self, name: str) -> dict[str, bytes]:
        secret = self.kubectl.get_json("secret", name, "-n", self.namespace)
        return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}

    def _config_map_data(self, name: str) -> dict[str, bytes]:
        config_map = self.kubectl.get_json("configmap", name, "-n", self.namespace)
        return {k: v.encode() for k, v in (config_map.get("data") or {}).items()}

    def resolve_env(self, container: dict[str, Any]) -> dict[str, str]:
        fields = {
            "metadata.name": self.pod_name,
            "metadata.namespace": self.namespace,
            "status.podIP": self.address,
        }
        labels = self.pod["metadata"].get("labels") or {}
        # A missing label reads as "", as the kubelet gives it.
        fields |= {f"metadata.labels['{key}']": value for key, value in labels.items()}
        env: dict[str, str] = {}
        for item in container.get("env") or []:
            name = item["name"]
            if "value" in item:
                env[name] = expand(str(item["value"]), env)
                continue
            source = item.get("valueFrom") or {}
            if "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                if path.startswith("metadata.labels['"):
                    fields.setdefault(path, "")
                if path not in fields:
                    raise PodRunError(f"env {name}: fieldRef {path} is not supported")
                env[name] = fields[path]
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                env[name] = self._secret_data(ref["name"])[ref["key"]].decode()
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                env[name] = self._config_map_data(ref["name"])[ref["key"]].decode()
            else:
                raise PodRunError(f"env {name}: unsupported valueFrom {sorted(source)}")
        public = env.get("BOUNDARY_WORKER_PUBLIC_ADDR", "")
        if ".svc." in public:
            # No cluster DNS here: the pod's stable name resolves to the pod's address.
            env["BOUNDARY_WORKER_PUBLIC_ADDR"] = f"{self.address}:{public.rsplit(':', 1)[1]}"
        return env

    def _claim_dir(self, claim: str) -> Path:
        pvc = self.kubectl.get_json("pvc", claim, "-n", self.namespace)
        directory = (
            self.state_dir / "volumes" / self.namespace / f"{claim}-{pvc['metadata']['uid']}"
        )
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def materialise_volumes(self) -> dict[str, Path]:
        volumes: dict[str, Path] = {}
        for volume in self.pod["spec"].get("volumes") or []:
            name = volume["name"]
            if "configMap" in volume or "secret" in volume:
                data = (
                    self._config_map_data(volume["configMap"]["name"])
                    if "configMap" in volume
                    else self._secret_data(volume["secret"]["secretName"])
                )
                target = self.work / "volumes" / name
                target.mkdir(parents=True)
                for key, value in data.items():
                    if "configMap" in volume:
                        value = self._bind_listeners(value)
                    (target / key).write_bytes(value)
                    (target / key).chmod(0o444 if "configMap" in volume else 0o400)
                volumes[name] = target
            elif "emptyDir" in volume:
                volumes[name] = self.work / "volumes" / name
                volumes[name].mkdir(parents=True)
            elif "persistentVolumeClaim" in volume:
                volumes[name] = self._claim_dir(volume["persistentVolumeClaim"]["claimName"])
            else:
                continue  # projected service-account tokens and the like: not needed here
        return volumes

    def _bind_listeners(self, content: bytes) -> bytes:
        """Wildcard listeners would collide between replicas on one host: bind them to the
        pod's own address, as they would be inside the pod's network namespace."""
        return content.replace(b'"0.0.0.0:', f'"{self.address}:'.encode())

    # ------------------------------------------------------------------ running

    def mount_script(
        self, container: dict[str, Any], volumes: dict[str, Path], env: dict[str, str]
    ) -> str:
        lines = ["set -eu", f"mkdir -p {MOUNT_ROOT}", f"mount -t tmpfs tmpfs {MOUNT_ROOT}"]
        # The image's binaries, as the container sees them. Bound before any volume is mounted:
        # an emptyDir on /tmp would otherwise hide a binary that lives under the host's /tmp.
        binaries = self.image_binaries(container)
        if binaries:
            lines.append(f"mkdir -p {RUNNER_BIN}")
        for binary in binaries:
            target = shlex.quote(f"{RUNNER_BIN}/{binary.name}")
            lines += [f"touch {target}", f"mount --bind {shlex.quote(str(binary))} {target}"]
        for mount in container.get("volumeMounts") or []:
            path = mount["mountPath"]
            if not (path == MOUNT_ROOT or path.startswith(MOUNT_ROOT + "/") or path == "/tmp"):
                raise PodRunError(f"mountPath {path}: the runner mounts only under {MOUNT_ROOT}")
            if mount["name"] not in volumes:
                continue
            source = volumes[mount["name"]]
            sub = mount.get("subPath") or expand(mount.get("subPathExpr", ""), env)
            if sub:
                source = source / sub
            if not source.exists():
                raise PodRunError(f"volume {mount['name']}: {sub or '.'} does not exist")
            q_source, q_path = shlex.quote(str(source)), shlex.quote(path)
            if source.is_dir():
                lines.append(f"mkdir -p {q_path}")
            else:
                lines.append(f"mkdir -p $(dirname {q_path}) && touch {q_path}")
            lines.append(f"mount --bind {q_source} {q_path}")
            if mount.get("readOnly"):
                lines.append(f"mount -o remount,bind,ro {q_path}")
        lines.append('exec "$@"')
        return "\n".join(lines)

    def argv(self, container: dict[str, Any], env: dict[str, str]) -> list[str]:
        command = [expand(a, env) for a in (container.get("command") or [])]
        command += [expand(a, env) for a in (container.get("args") or [])]
        if not command:
            raise PodRunError("the container has no command; the runner cannot know the image's")
        if "/" not in command[0] and (self.bin_dir / command[0]).exists():
            command[0] = f"{RUNNER_BIN}/{command[0]}"
        return command

    def image_binaries(self, container: dict[str, Any]) -> list[Path]:
        """The host programs standing in for the image's (boundary from STACK_BIN): the command,
        or the words of a `/bin/sh -c` script, that name a program of the bin directory. The
        script finds them on PATH, where RUNNER_BIN comes first."""
        command = [str(part) for part in container.get("command") or []]
        words = shlex.split(command[2]) if command[:2] == ["/bin/sh", "-c"] else command[:1]
        found = {self.bin_dir / w for w in words if w and "/" not in w}
        return sorted(path.resolve() for path in found if path.exists())

    def run(self) -> int:
        container = self.container()
        env = self.resolve_env(container)
        volumes = self.materialise_volumes()
        script = self.mount_script(container, volumes, env)
        unshare = ["unshare", "--mount", "--propagation", "private"]
        if os.geteuid() != 0:
            unshare.insert(1, "--map-root-user")
        child_env = {
            **env,
            "PATH": f"{RUNNER_BIN}:{self.bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",
        }
        argv = [*unshare, "/bin/sh", "-c", script, "pod", *self.argv(container, env)]
        print(f"[pod-run] {self.namespace}/{self.pod_name} at {self.address}", flush=True)
        process = subprocess.Popen(argv, env=child_env, preexec_fn=_die_with_parent)

        def forward(signum: int, _frame: object) -> None:
            process.send_signal(signum)

        signal.signal(signal.SIGINT, forward)
        signal.signal(signal.SIGTERM, forward)
        try:
            while True:
                try:
                    return process.wait(timeout=POD_CHECK_SECONDS)
                except subprocess.TimeoutExpired:
                    pass
                if not self._pod_still_here():
                    # As a kubelet does when its pod is deleted: stop the container.
                    print(f"[pod-run] {self.pod_name} was deleted; stopping", flush=True)
                    process.send_signal(signal.SIGTERM)
                    return process.wait()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)

    def _pod_still_here(self) -> bool:
        try:
            current = self.kubectl.get_json("pod", self.pod_name, "-n", self.namespace)
        except CommandFailed as exc:
            return "NotFound" not in exc.stderr
        same = current["metadata"]["uid"] == self.pod["metadata"]["uid"]
        return same and not current["metadata"].get("deletionTimestamp")


def _die_with_parent() -> None:
    """The container goes when its runner goes, however the runner ends (PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m boundary_devstack.podrunner")
    parser.add_argument("pod", help="<namespace>/<pod>")
    parser.add_argument("--env-file", type=Path, default=Path(".stack/env"))
    parser.add_argument("--state-dir", type=Path, default=Path(".stack/pods"))
    parser.add_argument("--container")
    args = parser.parse_args(argv)
    namespace, _, name = args.pod.rpartition("/")
    stack = StackEnv.read(args.env_file)
    try:
        runner = PodRunner(
            Kubectl(stack),
            namespace or "default",
            name,
            args.state_dir.resolve(),
            Path(stack.values["STACK_BIN"]),
            args.container,
        )
        return runner.run()
    except PodRunError as exc:
        print(f"[pod-run] {args.pod}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
