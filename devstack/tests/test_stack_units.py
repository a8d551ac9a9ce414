"""Pure logic of the local stack: env files, certificates, process failure reporting."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from boundary_devstack.pki import create_control_plane_pki
from boundary_devstack.process import ComponentError, ManagedProcess
from boundary_devstack.stack import LocalStack, StackEnv


def test_env_file_round_trips_values_with_quotes(tmp_path: Path) -> None:
    env = StackEnv({"KUBECONFIG": "/tmp/a b/kubeconfig", "ODD": "it's $HOME"})
    path = tmp_path / ".stack" / "env"
    env.write(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert StackEnv.read(path).values == env.values
    assert "export KUBECONFIG='/tmp/a b/kubeconfig'\n" in path.read_text()


def test_env_file_is_shell_sourceable(tmp_path: Path) -> None:
    import subprocess

    env = StackEnv({"ODD": "it's $HOME `x`"})
    path = tmp_path / "env"
    env.write(path)
    out = subprocess.run(
        ["bash", "-c", f'source "{path}"; printf %s "$ODD"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out == "it's $HOME `x`"


def test_pki_admin_is_system_masters_and_serving_cert_covers_loopback(tmp_path: Path) -> None:
    pki = create_control_plane_pki(tmp_path, "10.96.0.1")
    admin = x509.load_pem_x509_certificate(pki.admin_cert.read_bytes())
    orgs = [a.value for a in admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ["system:masters"]
    serving = x509.load_pem_x509_certificate(pki.serving_cert.read_bytes())
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1",
        "10.96.0.1",
    }
    assert pki.ca_key.stat().st_mode & 0o777 == 0o600


def test_process_that_exits_fails_fast_with_its_log(tmp_path: Path) -> None:
    process = ManagedProcess(
        "demo",
        [sys.executable, "-c", "print('bind: address already in use'); exit(3)"],
        log_path=tmp_path / "demo.log",
    )
    process.start()
    with pytest.raises(ComponentError) as caught:
        process.wait_healthy(lambda: False, timeout=30)
    assert caught.value.component == "demo"
    assert "exited with code 3" in str(caught.value)
    assert "address already in use" in str(caught.value)


def test_missing_program_is_named_and_nothing_starts(tmp_path: Path) -> None:
    stack = LocalStack(bin_dir=tmp_path)
    with pytest.raises(ComponentError, match=r"tools: missing in .*boundary, etcd"):
        stack.start()
    assert stack.processes == []
