"""Kubernetes configuration through the library: kubeconfigs, exec plugins, token files and the
in-cluster service account, the one-line errors of a bad configuration, and where key material
goes. No apiserver: these read files and run plugins (the e2e tests use them against a real
apiserver)."""

from __future__ import annotations

import atexit
import base64
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from boundary_operator import kube
from boundary_operator.kube import KubeConfigError, in_cluster_source, load_kubeconfig
from boundary_operator.main import connection_info
from boundary_operator.main import main as operator_main
from boundary_operator.manifest import rfc3339

SERVER = "https://127.0.0.1:6443"


def jwt(exp: datetime.datetime) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part({'exp': int(exp.timestamp())})}.c2ln"


def kubeconfig(path: Path, user: dict[str, Any], **cluster: Any) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "k", "cluster": {"server": SERVER, **cluster}}],
                "users": [{"name": "u", "user": user}],
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
            }
        )
    )
    return path


def exec_plugin(tmp_path: Path, body: str) -> dict[str, Any]:
    """An exec user running a Python script that prints `body` (a Python expression) as its
    ExecCredential status, and counts its runs."""
    script = tmp_path / "plugin.py"
    script.write_text(
        "import json, pathlib, sys\n"
        f"count = pathlib.Path({str(tmp_path / 'runs')!r})\n"
        "count.write_text(str(int(count.read_text() or 0) + 1) if count.exists() else '1')\n"
        f"status = {body}\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1',"
        " 'kind': 'ExecCredential', 'status': status}))\n"
    )
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(script)],
            "interactiveMode": "Never",
        }
    }


async def test_a_missing_kubeconfig_is_one_line_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match=f"no kubeconfig at {tmp_path}/nope"):
        await load_kubeconfig(str(tmp_path / "nope")).load()


async def test_an_unreadable_kubeconfig_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError, match=f"cannot read kubeconfig {tmp_path}: Is a dir"):
        await load_kubeconfig(str(tmp_path)).load()


async def test_a_malformed_kubeconfig_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("clusters: [\n  - {")
    with pytest.raises(KubeConfigError) as caught:
        await load_kubeconfig(str(path)).load()
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_an_unknown_context_is_named(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", {"token": "t"})
    with pytest.raises(KubeConfigError, match="elsewhere"):
        await load_kubeconfig(str(path), context="elsewhere").load()


async def test_a_kubeconfig_list_skips_missing_files(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "config", {"token": "static"})
    credentials = await load_kubeconfig(f"{tmp_path / 'absent'}{os.pathsep}{path}").load()
    assert credentials.configuration.host == SERVER
    assert credentials.token == "static"


async def test_exec_plugin_token_with_its_expiry_feeds_kopf_too(tmp_path: Path) -> None:
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    user = exec_plugin(
        tmp_path,
        f"{{'token': 'minted-' + open({str(tmp_path / 'runs')!r}).read(),"
        f" 'expirationTimestamp': {rfc3339(expires)!r}}}",
    )
    credentials = await load_kubeconfig(str(kubeconfig(tmp_path / "config", user))).load()
    assert credentials.token == "minted-1"
    assert credentials.expiration == expires.replace(microsecond=0)
    await credentials.refresh()  # not due: the plugin does not run again
    assert (tmp_path / "runs").read_text() == "1"
    await credentials.refresh(force=True)  # after a 401
    assert credentials.token == "minted-2"
    info = connection_info(credentials)
    assert info.token == "minted-2"
    assert info.scheme == "Bearer"
    assert info.server == SERVER
    assert info.expiration is not None
    assert expires - datetime.timedelta(seconds=61) < info.expiration < expires


async def test_a_failing_exec_plugin_is_one_line_with_its_error(tmp_path: Path) -> None:
    script = tmp_path / "fail.py"
    script.write_text("import sys; print('no cloud login', file=sys.stderr); sys.exit(3)")
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(script)],
        }
    }
    with pytest.raises(KubeConfigError) as caught:
        await load_kubeconfig(str(kubeconfig(tmp_path / "config", user))).load()
    message = str(caught.value)
    assert "exec credential plugin" in message
    assert "no cloud login" in message
    assert "\n" not in message


async def test_a_kubeconfig_token_file_is_read_again_as_it_rotates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("first\n")
    path = kubeconfig(tmp_path / "config", {"tokenFile": "token"})
    credentials = await load_kubeconfig(str(path)).load()
    assert credentials.token == "first"
    (tmp_path / "token").write_text("second")
    monkeypatch.setattr(kube, "TOKEN_FILE_PERIOD", 0.0)
    await credentials.refresh()
    assert credentials.token == "second"


def service_account(directory: Path, token: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "ca.crt").write_text(
        "-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"
    )
    (directory / "namespace").write_text("ops")
    rotated = directory / "token.new"
    rotated.write_text(token)
    rotated.replace(directory / "token")  # atomically, as the kubelet does
    return directory


async def test_in_cluster_token_file_is_read_again_as_it_rotates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    soon = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=10)
    directory = service_account(tmp_path / "sa", jwt(soon))
    credentials = await in_cluster_source(directory).load()
    assert credentials.configuration.host == "https://10.96.0.1:443"
    assert credentials.expiration == soon.replace(microsecond=0)
    later = soon + datetime.timedelta(hours=1)
    service_account(directory, jwt(later))
    await credentials.refresh()  # within the library's minute: the old token still serves
    assert credentials.expiration == soon.replace(microsecond=0)
    await credentials.refresh(force=True)
    assert credentials.token == jwt(later)
    assert credentials.expiration == later.replace(microsecond=0)
    # The hook that runs before every request is still ours after the library re-read.
    assert credentials.configuration.refresh_api_key_hook == credentials._hook


async def test_in_cluster_without_a_token_file_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(KubeConfigError, match="in-cluster service account"):
        await in_cluster_source(tmp_path).load()


async def test_inline_key_material_goes_only_to_the_private_directory(tmp_path: Path) -> None:
    secret = base64.b64encode(b"-----BEGIN PRIVATE KEY-----\nsecret\n").decode()
    certificate = base64.b64encode(b"-----BEGIN CERTIFICATE-----\ncert\n").decode()
    path = kubeconfig(
        tmp_path / "config",
        {"client-certificate-data": certificate, "client-key-data": secret},
        **{"certificate-authority-data": certificate},
    )
    credentials = await load_kubeconfig(str(path)).load()
    private = kube.private_dir()
    assert oct(private.stat().st_mode & 0o777) == "0o700"
    config = credentials.configuration
    files = [Path(f) for f in (config.cert_file, config.key_file, config.ssl_ca_cert)]
    assert all(f.parent == private for f in files)
    assert files[1].read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_the_private_directory_is_removed_at_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at_exit: list[tuple[Any, tuple[Any, ...]]] = []
    monkeypatch.setattr(kube, "_private_dir", None)
    monkeypatch.setattr(atexit, "register", lambda f, *args: at_exit.append((f, args)))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    directory = kube.private_dir()
    assert directory.parent == tmp_path
    (directory / "client.key").write_text("secret")
    for function, args in at_exit:  # what the interpreter runs as it exits
        function(*args)
    assert list(tmp_path.iterdir()) == []


def test_private_directories_of_killed_processes_go_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube, "_private_dir", None)
    monkeypatch.setattr(atexit, "register", lambda *_: None)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    orphan = tmp_path / "boundary-operator-999999999-abc"  # no such process
    orphan.mkdir()
    (orphan / "client.key").write_text("secret")
    alive = tmp_path / f"boundary-operator-{os.getppid()}-def"
    alive.mkdir()
    mine = kube.private_dir()
    assert not orphan.exists()
    assert alive.exists()
    assert mine.name.startswith(f"boundary-operator-{os.getpid()}-")


async def test_no_private_directory_without_inline_key_material(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube, "_private_dir", None)
    monkeypatch.setattr(atexit, "register", lambda *_: None)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    path = kubeconfig(tmp_path / "config", {"token": "static"})
    await load_kubeconfig(str(path)).load()
    assert list((tmp_path / "tmp").iterdir()) == []


def run_operator(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    *args: str,
) -> tuple[int, str]:
    for name in list(os.environ):
        if name.startswith(("BOUNDARY_", "KUBE")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = operator_main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", [["run"], ["drain", "--timeout", "1"]])
def test_operator_without_a_kubeconfig_exits_with_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    code, stderr = run_operator(
        monkeypatch,
        capsys,
        {"KUBECONFIG": str(tmp_path / "absent"), "BOUNDARY_ADDR": "http://127.0.0.1:9"},
        *command,
    )
    assert code == 1
    assert stderr.strip().count("\n") == 0, stderr
    assert f"no kubeconfig at {tmp_path}/absent" in stderr


def test_operator_without_a_controller_address_exits_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stderr = run_operator(monkeypatch, capsys, {"KUBECONFIG": str(tmp_path)}, "run")
    assert code == 2
    assert stderr.strip() == (
        "boundary-operator: no controller address: set BOUNDARY_ADDR (or --boundary-addr)"
    )
