"""Pure logic of the local stack: env files, certificates, process failure reporting, and the
tries of the official `boundary connect`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from boundary_devstack.clients import connect_ended_because, connect_tries
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


# What `boundary connect` 0.21.1 logged when the worker misread its handshake (run here).
MISREAD_LOG = """
Proxy listening information:
  Address:             127.0.0.1
  Session ID:          s_HfAmVw3iUz

Termination information:
  Reason:   Error from proxy client: error from runTcpProxyV1: error reading
  handshake result: failed to get reader: received close frame: status =
  StatusProtocolError and reason = "received header with unexpected rsv bits
  set: false:false:true"
"""


def test_a_failed_connect_try_is_told_by_the_reason_it_logged(tmp_path: Path) -> None:
    log = tmp_path / "connect-1.log"
    log.write_text(MISREAD_LOG)
    reason = connect_ended_because(log)
    assert reason.startswith("Error from proxy client: error from runTcpProxyV1:")
    assert reason.endswith('"received header with unexpected rsv bits set: false:false:true"')
    assert "\n" not in reason
    assert connect_ended_because(tmp_path / "never-written.log") == "no reason logged"


def test_connect_tries_count_from_one_and_pause_longer_between_later_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    assert list(connect_tries(6)) == [1, 2, 3, 4, 5, 6]
    assert pauses == [0.5, 1.0, 2.0, 3.0, 3.0]
