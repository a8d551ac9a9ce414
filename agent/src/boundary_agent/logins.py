"""Logins kept across restarts (`login_store`): one file per OS user, `<uid>.json`, in a directory
that only the agent's own user may open.

A file holds the controller address, token id, Boundary user id and expiry in the clear, and the
auth token sealed with AES-256-GCM under the store's key (`key`, 32 random bytes, beside the
files), with those clear fields as associated data: the token never appears as text (not to a
grep, a log shipper or a copied file), and a file whose fields were edited (to send the token
to another controller, say) does not open. What keeps other users out is the permission: the
directory is 0700 and every file 0600, owned by the agent's user, checked at each start; the
agent refuses a store that others could open, and drops a login file that others could read.
Whoever can read the whole directory (root) can read the logins, as with any daemon's secrets."""

from __future__ import annotations

import base64
import datetime
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from boundary_agent.sealing import AES256GCM, KEY_BYTES, NONCE_BYTES, SealError

KEY_FILE = "key"
FORMAT_VERSION = 1


class LoginStoreError(Exception):
    """The store cannot be used safely; the message names login_store and the cause."""


@dataclass(frozen=True)
class StoredLogin:
    uid: int
    boundary_addr: str
    token_id: str
    user_id: str
    expiration: datetime.datetime | None
    token: str = field(repr=False)


class LoginStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._key: AES256GCM | None = None

    def open(self) -> None:
        """Create the directory and key when missing, and check both belong to the agent's user
        alone. LoginStoreError otherwise."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            _check_private(self.directory, os.lstat(self.directory), directory=True)
            self._key = AES256GCM(self._read_or_create_key())
        except OSError as exc:
            raise LoginStoreError(f"login_store {self.directory}: {exc.strerror or exc}") from exc

    def _read_or_create_key(self) -> bytes:
        path = self.directory / KEY_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            key = _read_private(path)
            if len(key) != KEY_BYTES:
                raise LoginStoreError(
                    f"login_store {path}: not a key ({len(key)} bytes, not {KEY_BYTES}); "
                    "remove it, and every user logs in again"
                ) from None
            return key
        key = os.urandom(KEY_BYTES)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_directory(self.directory)
        return key

    @property
    def _aead(self) -> AES256GCM:
        if self._key is None:
            raise LoginStoreError(f"login_store {self.directory}: not opened")
        return self._key

    def save(self, login: StoredLogin) -> None:
        """Keep the login (replacing the user's previous one), atomically. OSError on failure."""
        clear = _clear_fields(login)
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.seal(nonce, login.token.encode(), _associated(clear))
        record = {
            **clear,
            "nonce": base64.b64encode(nonce).decode(),
            "sealed_token": base64.b64encode(sealed).decode(),
        }
        path = self._path(login.uid)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
        _fsync_directory(self.directory)

    def remove(self, uid: int) -> None:
        self._path(uid).unlink(missing_ok=True)

    def load(self) -> tuple[list[StoredLogin], list[str]]:
        """Every login that opens; and, for each file that does not, what was wrong with it
        (that file is removed: its user logs in again)."""
        logins, problems = [], []
        for path in sorted(self.directory.glob("*.json")):
            try:
                logins.append(self._load(path))
            except (LoginStoreError, OSError, ValueError, KeyError, SealError) as exc:
                reason = (
                    "it does not open with the store's key"
                    if isinstance(exc, SealError)
                    else str(exc) or type(exc).__name__
                )
                problems.append(f"login_store {path.name} dropped ({reason}); log in again")
                path.unlink(missing_ok=True)
        return logins, problems

    def _load(self, path: Path) -> StoredLogin:
        record: dict[str, Any] = json.loads(_read_private(path))
        if record.get("version") != FORMAT_VERSION:
            raise ValueError(f"format version {record.get('version')!r}")
        clear = {k: record[k] for k in ("version", "uid", "boundary_addr", "token_id", "user_id")}
        clear["expiration"] = record["expiration"]
        if path.name != f"{clear['uid']}.json":
            raise ValueError(f"it holds the login of uid {clear['uid']}")
        token = self._aead.open(
            base64.b64decode(record["nonce"]),
            base64.b64decode(record["sealed_token"]),
            _associated(clear),
        )
        expiration = clear["expiration"]
        return StoredLogin(
            uid=int(clear["uid"]),
            boundary_addr=str(clear["boundary_addr"]),
            token_id=str(clear["token_id"]),
            user_id=str(clear["user_id"]),
            expiration=datetime.datetime.fromisoformat(expiration) if expiration else None,
            token=token.decode(),
        )

    def _path(self, uid: int) -> Path:
        return self.directory / f"{uid}.json"


def _clear_fields(login: StoredLogin) -> dict[str, Any]:
    return {
        "version": FORMAT_VERSION,
        "uid": login.uid,
        "boundary_addr": login.boundary_addr,
        "token_id": login.token_id,
        "user_id": login.user_id,
        "expiration": login.expiration.isoformat() if login.expiration else None,
    }


def _associated(clear: dict[str, Any]) -> bytes:
    """The clear fields, bound to the sealed token: changing any of them breaks the seal."""
    return json.dumps(clear, sort_keys=True).encode()


def _check_private(path: Path, info: os.stat_result, *, directory: bool) -> None:
    kind = "directory" if directory else "file"
    if directory and not stat.S_ISDIR(info.st_mode):
        raise LoginStoreError(f"login_store {path}: not a directory (a symbolic link?)")
    if not directory and not stat.S_ISREG(info.st_mode):
        raise LoginStoreError(f"login_store {path}: not a regular file")
    if info.st_uid != os.geteuid():
        raise LoginStoreError(
            f"login_store {path}: the {kind} belongs to uid {info.st_uid}, not to the agent's "
            f"user (uid {os.geteuid()})"
        )
    if info.st_mode & 0o077:
        raise LoginStoreError(
            f"login_store {path}: group or others may open the {kind} "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); it must be "
            f"{'0700' if directory else '0600'}"
        )


def _read_private(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        _check_private(path, os.fstat(handle.fileno()), directory=False)
        return handle.read()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
