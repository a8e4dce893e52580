"""The encrypted backup file: a header, then a tar stream in authenticated chunks.

Layout: ``MAGIC``, a 4-byte big-endian length and the header (JSON: format version, scrypt's
parameters and salt, the cipher, the chunk size, a random nonce prefix, a short digest of the
key that tells a wrong passphrase from a damaged file), then chunks, each a 4-byte length and
AES-256-GCM ciphertext. Chunk *i*'s nonce is the prefix, *i* and a flag marking the last
chunk, and every chunk authenticates the whole header: a reordered, dropped, truncated or
altered chunk, or a changed header, fails to decrypt. The key is scrypt of the passphrase;
without it nothing in the file (but its size) can be read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import struct
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"certtoken-backup\n"
FORMAT = 1
CHUNK = 1 << 20
SCRYPT = {"n": 2**15, "r": 8, "p": 1}
MIN_PASSPHRASE = 12
_MAX_HEADER = 4096
_MAX_SCRYPT_N = 2**20
_LENGTH = struct.Struct(">I")


class ArchiveError(Exception):
    """The file is not a backup, is damaged, or the passphrase is wrong."""


def derive_key(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    """The 256-bit archive key: scrypt of *passphrase*."""
    memory = 256 * n * r + 2**20
    return hashlib.scrypt(passphrase, salt=salt, n=n, r=r, p=p, maxmem=memory, dklen=32)


def key_check(key: bytes) -> str:
    """A short digest of the key: tells a wrong passphrase from a damaged file."""
    return hashlib.sha256(b"certtoken-backup-key-check\0" + key).hexdigest()[:16]


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


class EncryptingWriter(io.RawIOBase):
    """A write-only file that encrypts what is written into *out*, chunk by chunk."""

    def __init__(self, out: IO[bytes], passphrase: bytes) -> None:
        salt, prefix = secrets.token_bytes(16), secrets.token_bytes(7)
        header = {
            "format": FORMAT,
            "kdf": {"name": "scrypt", **SCRYPT, "salt": salt.hex()},
            "cipher": "AES-256-GCM",
            "chunk": CHUNK,
            "nonce_prefix": prefix.hex(),
        }
        key = derive_key(passphrase, salt, **SCRYPT)
        header["key_check"] = key_check(key)
        self._header = json.dumps(header, sort_keys=True).encode()
        self._aead = AESGCM(key)
        self._prefix = prefix
        self._out = out
        self._buffer = bytearray()
        self._index = 0
        out.write(MAGIC + _LENGTH.pack(len(self._header)) + self._header)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._buffer += data
        while len(self._buffer) > CHUNK:
            self._emit(bytes(self._buffer[:CHUNK]), last=False)
            del self._buffer[:CHUNK]
        return len(data)

    def finish(self) -> None:
        """Write the last chunk (possibly empty): the mark that the archive is complete."""
        self._emit(bytes(self._buffer), last=True)
        self._buffer.clear()

    def _emit(self, plain: bytes, last: bool) -> None:
        aad = MAGIC + self._header
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index, last), plain, aad)
        self._out.write(_LENGTH.pack(len(sealed)) + sealed)
        self._index += 1


class DecryptingReader(io.RawIOBase):
    """A read-only file of the plaintext of an archive; raises ArchiveError on any damage."""

    def __init__(self, source: IO[bytes], passphrase: bytes) -> None:
        self._source = source
        if source.read(len(MAGIC)) != MAGIC:
            raise ArchiveError("not a certtoken backup file")
        header_bytes = self._exact(_LENGTH.size, "header")
        (length,) = _LENGTH.unpack(header_bytes)
        if length > _MAX_HEADER:
            raise ArchiveError("damaged backup file: header too long")
        self._header = self._exact(length, "header")
        try:
            header = json.loads(self._header)
            kdf = header["kdf"]
            n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
            salt = bytes.fromhex(kdf["salt"])
            self._prefix = bytes.fromhex(header["nonce_prefix"])
            version = header["format"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ArchiveError("damaged backup file: unreadable header") from exc
        if version != FORMAT:
            raise ArchiveError(f"backup format {version!r} is not known to this certtoken")
        if kdf.get("name") != "scrypt" or not (2 <= n <= _MAX_SCRYPT_N) or r > 32 or p > 16:
            raise ArchiveError("damaged backup file: unsupported key derivation")
        if len(self._prefix) != 7:
            raise ArchiveError("damaged backup file: bad nonce")
        key = derive_key(passphrase, salt, n, r, p)
        if header.get("key_check") != key_check(key):
            raise ArchiveError("wrong passphrase (or not this backup's)")
        self._aead = AESGCM(key)
        self._index = 0
        self._done = False
        self._plain = b""

    def _exact(self, size: int, what: str) -> bytes:
        data = self._source.read(size)
        if len(data) != size:
            raise ArchiveError(f"damaged backup file: truncated {what}")
        return data

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._plain and not self._done:
            self._next_chunk()
        size = min(len(target), len(self._plain))
        target[:size] = self._plain[:size]
        self._plain = self._plain[size:]
        return size

    def _next_chunk(self) -> None:
        head = self._source.read(_LENGTH.size)
        if not head:
            raise ArchiveError("damaged backup file: it ends before its last chunk")
        if len(head) != _LENGTH.size:
            raise ArchiveError("damaged backup file: truncated chunk")
        (length,) = _LENGTH.unpack(head)
        if length > CHUNK + 16:
            raise ArchiveError("damaged backup file: chunk too long")
        sealed = self._exact(length, "chunk")
        aad = MAGIC + self._header
        for last in (False, True):
            nonce = _nonce(self._prefix, self._index, last)
            try:
                self._plain = self._aead.decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
            self._done = last
            break
        else:
            raise ArchiveError(f"damaged backup file: chunk {self._index} does not verify")
        self._index += 1
        if self._done and self._source.read(1):
            raise ArchiveError("damaged backup file: data after its last chunk")


def open_output(path: os.PathLike[str] | str) -> tuple[IO[bytes], str]:
    """A new owner-only temporary file beside *path*, and its name."""
    directory, name = os.path.split(os.fspath(path))
    temporary = os.path.join(directory or ".", f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "wb"), temporary
