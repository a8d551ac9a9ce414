"""AES-256-GCM for the login store, from the OpenSSL that Python's own `ssl` module loaded.

The agent used `cryptography` for this one cipher, and importing it cost about 6.7 MiB of
resident memory (its Rust extension and cffi), a seventh of the idle agent. The libcrypto that
`ssl` links is already mapped into every agent, so calling its EVP interface through ctypes costs
nothing more. The output is the same as `cryptography`'s AESGCM (ciphertext, then a 16-byte
tag), so stores written before open unchanged; a unit test holds the two to each other.

Linux first: the library is found in /proc/self/maps, where `ssl` put it; elsewhere, by name."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import ssl  # noqa: F401 - loads the libcrypto that _libcrypto_path looks for
from collections.abc import Iterator

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16

# EVP_CIPHER_CTX_ctrl commands (the same numbers in OpenSSL 1.1 and 3).
_EVP_CTRL_GCM_GET_TAG = 0x10
_EVP_CTRL_GCM_SET_TAG = 0x11


class SealError(Exception):
    """A sealed value does not open: wrong key, nonce or associated data, or altered bytes."""


def _libcrypto_path() -> str:
    # The libcrypto that ssl's extension loaded, so the two agree on the version and no second
    # copy is mapped.
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                _, slash, rest = line.rstrip("\n").partition("/")
                if slash and os.path.basename(rest).startswith("libcrypto.so"):
                    return slash + rest
    except OSError:
        pass
    found = ctypes.util.find_library("crypto")
    if found is None:
        raise RuntimeError("OpenSSL's libcrypto is not found; the login store needs it")
    return found


@functools.cache
def _libcrypto() -> ctypes.CDLL:
    lib = ctypes.CDLL(_libcrypto_path())
    pointer, char_p, integer = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    lib.EVP_CIPHER_CTX_new.argtypes, lib.EVP_CIPHER_CTX_new.restype = [], pointer
    lib.EVP_CIPHER_CTX_free.argtypes, lib.EVP_CIPHER_CTX_free.restype = [pointer], None
    lib.EVP_aes_256_gcm.argtypes, lib.EVP_aes_256_gcm.restype = [], pointer
    for name in ("EVP_EncryptInit_ex", "EVP_DecryptInit_ex"):
        getattr(lib, name).argtypes = [pointer, pointer, pointer, char_p, char_p]
        getattr(lib, name).restype = integer
    for name in ("EVP_EncryptUpdate", "EVP_DecryptUpdate"):
        getattr(lib, name).argtypes = [pointer, pointer, ctypes.POINTER(integer), char_p, integer]
        getattr(lib, name).restype = integer
    for name in ("EVP_EncryptFinal_ex", "EVP_DecryptFinal_ex"):
        getattr(lib, name).argtypes = [pointer, pointer, ctypes.POINTER(integer)]
        getattr(lib, name).restype = integer
    lib.EVP_CIPHER_CTX_ctrl.argtypes = [pointer, integer, integer, pointer]
    lib.EVP_CIPHER_CTX_ctrl.restype = integer
    return lib


class AES256GCM:
    """Seal and open with one 32-byte key. A nonce must never be used twice under one key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"an AES-256 key is {KEY_BYTES} bytes, not {len(key)}")
        self._key = key
        self._lib = _libcrypto()

    def seal(self, nonce: bytes, plaintext: bytes, associated: bytes) -> bytes:
        """The ciphertext followed by the 16-byte tag."""
        lib = self._lib
        with self._cipher(encrypt=True, nonce=nonce, data=plaintext, associated=associated) as (
            ctx,
            out,
            total,
        ):
            written = ctypes.c_int(0)
            ok = lib.EVP_EncryptFinal_ex(ctx, ctypes.byref(out, total), ctypes.byref(written))
            total += written.value
            tag = ctypes.create_string_buffer(TAG_BYTES)
            ok = ok and lib.EVP_CIPHER_CTX_ctrl(ctx, _EVP_CTRL_GCM_GET_TAG, TAG_BYTES, tag)
            if not ok or total != len(plaintext):
                raise RuntimeError("OpenSSL's AES-256-GCM failed to seal")
            return out.raw[:total] + tag.raw

    def open(self, nonce: bytes, sealed: bytes, associated: bytes) -> bytes:
        """The plaintext; SealError when the tag does not match."""
        if len(sealed) < TAG_BYTES:
            raise SealError(f"{len(sealed)} bytes is shorter than the tag")
        ciphertext, tag = sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]
        lib = self._lib
        with self._cipher(encrypt=False, nonce=nonce, data=ciphertext, associated=associated) as (
            ctx,
            out,
            total,
        ):
            tag_buffer = ctypes.create_string_buffer(tag, TAG_BYTES)
            if not lib.EVP_CIPHER_CTX_ctrl(ctx, _EVP_CTRL_GCM_SET_TAG, TAG_BYTES, tag_buffer):
                raise RuntimeError("OpenSSL's AES-256-GCM failed to open")
            # The tag is checked here: Final fails (0) when it does not match.
            written = ctypes.c_int(0)
            if lib.EVP_DecryptFinal_ex(ctx, ctypes.byref(out, total), ctypes.byref(written)) <= 0:
                raise SealError("the tag does not match (wrong key or associated data, or altered)")
            return out.raw[: total + written.value]

    @contextlib.contextmanager
    def _cipher(
        self, *, encrypt: bool, nonce: bytes, data: bytes, associated: bytes
    ) -> Iterator[tuple[int, ctypes.Array[ctypes.c_char], int]]:
        """A cipher context that has taken the associated data and `data`: (the context, the
        output buffer, the octets written to it). Freed on leaving."""
        _check_nonce(nonce)
        lib = self._lib
        init, update = (
            (lib.EVP_EncryptInit_ex, lib.EVP_EncryptUpdate)
            if encrypt
            else (lib.EVP_DecryptInit_ex, lib.EVP_DecryptUpdate)
        )
        ctx = lib.EVP_CIPHER_CTX_new()
        if not ctx:
            raise MemoryError("EVP_CIPHER_CTX_new")
        try:
            out = ctypes.create_string_buffer(len(data) + TAG_BYTES)
            written = ctypes.c_int(0)
            ok = init(ctx, lib.EVP_aes_256_gcm(), None, self._key, nonce)
            ok = ok and update(ctx, None, ctypes.byref(written), associated, len(associated))
            ok = ok and update(ctx, out, ctypes.byref(written), data, len(data))
            if not ok:
                raise RuntimeError("OpenSSL's AES-256-GCM failed to start")
            yield ctx, out, written.value
        finally:
            lib.EVP_CIPHER_CTX_free(ctx)


def _check_nonce(nonce: bytes) -> None:
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"the nonce is {NONCE_BYTES} bytes, not {len(nonce)}")
