"""Logins kept across restarts (logins.py): what the files hold and who may open them, edited or
foreign files, and the agent restoring, refreshing and dropping kept logins (with the stub
controller). The real agent restarted against the real controller is in tests/e2e."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from stub_controller import StubController, alias, token

from boundary_agent.config import AgentConfig
from boundary_agent.daemon import Agent
from boundary_agent.logins import LoginStore, LoginStoreError, StoredLogin
from boundary_agent.sealing import AES256GCM, SealError
from boundary_api import Unauthenticated, Unavailable

UID = 1234
TOKEN = token("k")
LATER = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)


def _login(uid: int = UID, addr: str = "http://controller.test:9200") -> StoredLogin:
    return StoredLogin(
        uid=uid,
        boundary_addr=addr,
        token_id=TOKEN.rsplit("_", 1)[0],
        user_id="u_1234567890",
        expiration=LATER,
        token=TOKEN,
    )


def _store(tmp_path: Path) -> LoginStore:
    store = LoginStore(tmp_path / "logins")
    store.open()
    return store


def test_a_kept_login_comes_back_whole_and_its_token_is_nowhere_in_clear(
    tmp_path: Path,
) -> None:
    store = _store(tmp_path)
    store.save(_login())
    reopened = LoginStore(store.directory)
    reopened.open()
    assert reopened.load() == ([_login()], [])
    for path in store.directory.iterdir():
        raw = path.read_bytes()
        assert TOKEN.encode() not in raw, path
        assert TOKEN.rsplit("_", 1)[1].encode() not in raw, path
        assert os.stat(path).st_mode & 0o777 == 0o600, path
    assert os.stat(store.directory).st_mode & 0o777 == 0o700
    assert {p.name for p in store.directory.iterdir()} == {"key", f"{UID}.json"}
    assert "token=" not in repr(_login()), "the token stays out of reprs (and so out of logs)"


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 64, 4099])
def test_the_seal_is_what_cryptography_seals_and_each_opens_the_other(size: int) -> None:
    """Stores were written with `cryptography`'s AESGCM before the agent called OpenSSL itself;
    they must keep opening, and what the agent seals must be standard AES-256-GCM."""
    key, nonce = os.urandom(32), os.urandom(12)
    plaintext, associated = os.urandom(size), os.urandom(size % 41)
    ours, theirs = AES256GCM(key), AESGCM(key)
    sealed = ours.seal(nonce, plaintext, associated)
    assert sealed == theirs.encrypt(nonce, plaintext, associated)
    assert ours.open(nonce, sealed, associated) == plaintext
    assert theirs.decrypt(nonce, sealed, associated) == plaintext


def test_the_seal_meets_the_gcm_specifications_test_vector() -> None:
    """Test case 16 of McGrew and Viega's GCM specification: AES-256, 60 bytes, 20 of AAD."""
    key = bytes.fromhex("feffe9928665731c6d6a8f9467308308" * 2)
    nonce = bytes.fromhex("cafebabefacedbaddecaf888")
    plaintext = bytes.fromhex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
        "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
    )
    associated = bytes.fromhex("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    sealed = AES256GCM(key).seal(nonce, plaintext, associated)
    assert sealed.hex() == (
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
        "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
        "76fc6ece0f4e1768cddf8853bb2d551b"
    )


@pytest.mark.parametrize("change", ["key", "nonce", "associated", "ciphertext", "tag", "short"])
def test_a_seal_changed_anywhere_does_not_open(change: str) -> None:
    key, nonce, associated = os.urandom(32), os.urandom(12), b"clear fields"
    sealed = AES256GCM(key).seal(nonce, b"at_token", associated)
    flip = {"ciphertext": 0, "tag": len(sealed) - 1}
    if change == "key":
        key = os.urandom(32)
    elif change == "nonce":
        nonce = os.urandom(12)
    elif change == "associated":
        associated += b"!"
    elif change == "short":
        sealed = sealed[:15]
    else:
        at = flip[change]
        sealed = sealed[:at] + bytes([sealed[at] ^ 1]) + sealed[at + 1 :]
    with pytest.raises(SealError):
        AES256GCM(key).open(nonce, sealed, associated)


def test_a_key_or_nonce_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes, not 16"):
        AES256GCM(os.urandom(16))
    with pytest.raises(ValueError, match="12 bytes, not 8"):
        AES256GCM(os.urandom(32)).seal(os.urandom(8), b"x", b"")


def test_a_replaced_login_and_a_removed_one(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.save(_login(addr="http://old.test:9200"))
    store.save(_login(addr="http://new.test:9200"))
    logins, _ = store.load()
    assert [login.boundary_addr for login in logins] == ["http://new.test:9200"]
    store.remove(UID)
    assert store.load() == ([], [])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("boundary_addr", "http://attacker.example:9200"),  # the token sent elsewhere
        ("uid", 0),
        ("user_id", "u_0000000000"),
        ("expiration", "2199-01-01T00:00:00+00:00"),
    ],
)
def test_an_edited_login_does_not_open_and_is_dropped(
    tmp_path: Path, field: str, value: Any
) -> None:
    store = _store(tmp_path)
    store.save(_login())
    path = store.directory / f"{UID}.json"
    record = json.loads(path.read_text())
    record[field] = value
    path.write_text(json.dumps(record))
    logins, problems = store.load()
    assert logins == []
    assert len(problems) == 1
    assert f"{UID}.json" in problems[0]
    assert "log in again" in problems[0]
    assert not path.exists()


def test_logins_under_another_key_are_dropped(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.save(_login())
    (store.directory / "key").unlink()
    fresh = _store(tmp_path)
    logins, problems = fresh.load()
    assert logins == []
    assert "does not open with the store's key" in problems[0]


def test_a_login_file_others_may_read_is_dropped(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.save(_login())
    (store.directory / f"{UID}.json").chmod(0o644)
    logins, problems = store.load()
    assert logins == []
    assert "group or others" in problems[0]


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o777])
def test_a_store_others_may_open_is_refused(tmp_path: Path, mode: int) -> None:
    directory = tmp_path / "logins"
    directory.mkdir(mode=0o700)
    directory.chmod(mode)
    with pytest.raises(LoginStoreError, match=r"login_store .*group or others may open"):
        LoginStore(directory).open()


def test_a_store_behind_a_symbolic_link_or_with_a_loose_key_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(LoginStoreError, match="not a directory"):
        LoginStore(tmp_path / "link").open()
    store = _store(tmp_path)
    (store.directory / "key").chmod(0o644)
    with pytest.raises(LoginStoreError, match="group or others may open the file"):
        LoginStore(store.directory).open()


def test_a_store_that_cannot_be_created_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(LoginStoreError, match="login_store"):
        LoginStore(tmp_path / "file" / "logins").open()


# ---------------------------------------------------------------- the agent's use of the store


def _config(tmp_path: Path) -> AgentConfig:
    return AgentConfig(
        v4_prefix="127.96.0.0/16",
        state_file=str(tmp_path / "run" / "state.json"),
        override_upstream_dns_servers=["127.0.0.1:9"],
        login_store=str(tmp_path / "logins"),
    )


def _users_in_state(agent: Agent) -> list[int]:
    users: list[int] = json.loads(Path(agent.config.state_file).read_text())["users"]
    return users


async def test_a_login_survives_a_new_agent_and_ends_when_the_controller_rejects_it(
    tmp_path: Path,
) -> None:
    controller = StubController(aliases=[alias("db.stub.test")], expiration=LATER)
    first = Agent(_config(tmp_path), connect=controller.connect)
    assert first.users.restore() == 0
    await first.add_token(UID, "http://controller.test:9200", TOKEN)
    await first.users.close()

    # A new agent (a restart): the login is back before any controller call.
    second = Agent(_config(tmp_path), connect=controller.connect)
    calls = sum(controller.calls.values())
    assert second.users.restore() == 1
    assert sum(controller.calls.values()) == calls
    user = second.users.get(UID)
    assert user is not None
    assert (user.token_id, user.boundary_addr) == (
        TOKEN.rsplit("_", 1)[0],
        "http://controller.test:9200",
    )

    # The controller unreachable: the login stays, on disk too.
    controller.list_error = Unavailable("controller unreachable")
    await second.refresh_user(user)
    assert second.users.get(UID) is not None
    assert (tmp_path / "logins" / f"{UID}.json").exists()

    # The token revoked: the login ends, and does not come back with the next agent.
    controller.list_error = Unauthenticated("token revoked", status=401)
    await second.refresh_user(user)
    assert second.users.get(UID) is None
    assert _users_in_state(second) == []
    assert not (tmp_path / "logins" / f"{UID}.json").exists()
    third = Agent(_config(tmp_path), connect=controller.connect)
    assert third.users.restore() == 0


async def test_an_expired_kept_login_is_dropped_at_the_first_refresh(tmp_path: Path) -> None:
    store = _store(tmp_path)
    expired = _login()
    store.save(
        StoredLogin(
            uid=expired.uid,
            boundary_addr=expired.boundary_addr,
            token_id=expired.token_id,
            user_id=expired.user_id,
            expiration=datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC),
            token=expired.token,
        )
    )
    controller = StubController()
    agent = Agent(_config(tmp_path), connect=controller.connect)
    assert agent.users.restore() == 1
    user = agent.users.get(UID)
    assert user is not None
    await agent.refresh_user(user)
    assert agent.users.get(UID) is None
    assert controller.calls["users.list_resolvable_aliases"] == 0
    assert store.load() == ([], [])


async def test_a_login_store_that_fails_to_write_keeps_the_login_in_memory(
    tmp_path: Path,
) -> None:
    controller = StubController(expiration=LATER)
    agent = Agent(_config(tmp_path), connect=controller.connect)
    agent.users.restore()
    (tmp_path / "logins" / f".{UID}.json.tmp").mkdir()  # where the file would be written
    await agent.add_token(UID, "http://controller.test:9200", TOKEN)
    assert agent.users.get(UID) is not None
    assert any("not kept across restarts" in e for e in agent.health.errors)


def test_the_agent_with_a_login_store_does_not_import_cryptography(tmp_path: Path) -> None:
    """`cryptography` cost the idle agent about 6.7 MiB of resident memory; OpenSSL, loaded by
    `ssl` anyway, does the same work (sealing.py)."""
    script = (
        "import sys, pathlib, boundary_agent.cli, boundary_agent.daemon\n"
        "from boundary_agent.logins import LoginStore\n"
        f"store = LoginStore(pathlib.Path({str(tmp_path / 'logins')!r}))\n"
        "store.open()\n"
        "store.load()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('cryptography', '_cffi'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
