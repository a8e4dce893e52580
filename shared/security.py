"""Password hashing, access tokens and encryption of stored secrets."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from cryptography.fernet import Fernet, InvalidToken

from shared.keyring import current_key, keys_of

_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1


def hash_password(password: str, *, cost: int = _SCRYPT_N) -> str:
    """Hash *password* with scrypt (memory-hard) and a random salt; *cost* is scrypt's N."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=cost, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return "$".join(["scrypt", str(cost), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest)])


def verify_password(password: str, stored: str) -> bool:
    """Whether *password* matches the *stored* hash, in constant time."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Identity:
    """Who is calling: a name, a role (admin or user) and, for users, a realm."""

    username: str
    role: str
    realm: str = ""


class InvalidAccessToken(Exception):
    """The access token is missing, expired, forged or malformed."""


class ExpiredAccessToken(InvalidAccessToken):
    """The access token was valid but its lifetime is over."""


def issue_token(identity: Identity, secret: str, lifetime: int) -> str:
    """A signed, expiring access token (JWT, HS256) for *identity*."""
    now = int(time.time())
    claims = {
        "sub": identity.username,
        "role": identity.role,
        "realm": identity.realm,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "iss": "certtoken",
    }
    return jwt.encode(claims, _jwt_key(secret), algorithm="HS256")


def read_token(token: str, secret: str) -> Identity:
    """Verify *token* (signed with any key of the keyring *secret*) and return whom it names."""
    identity, expires = _verified(token, secret)
    # A token verified before is not verified again (an HMAC and a JSON parse per request),
    # but its expiry is checked every time.
    if time.time() >= expires:
        raise ExpiredAccessToken("Signature has expired")
    return identity


@functools.lru_cache(maxsize=1024)
def _verified(token: str, secret: str) -> tuple[Identity, float]:
    """Whom *token* names and when it expires; raises when it is invalid or expired now."""
    keys = keys_of(secret)
    for index, key in enumerate(keys):
        try:
            claims = jwt.decode(
                token,
                _jwt_key(key),
                algorithms=["HS256"],
                issuer="certtoken",
                options={"require": ["exp", "sub", "role"]},
            )
            break
        except jwt.InvalidSignatureError as exc:
            # Signed before a rotation began, with an older key of the ring: try the next.
            if index == len(keys) - 1:
                raise InvalidAccessToken(str(exc)) from exc
        except jwt.ExpiredSignatureError as exc:
            raise ExpiredAccessToken(str(exc)) from exc
        except jwt.PyJWTError as exc:
            raise InvalidAccessToken(str(exc)) from exc
    role = claims.get("role")
    if role not in ("admin", "user"):
        raise InvalidAccessToken("unknown role")
    identity = Identity(username=str(claims["sub"]), role=role, realm=str(claims.get("realm", "")))
    return identity, float(claims["exp"])


def _jwt_key(secret: str) -> bytes:
    return hashlib.sha256(b"certtoken-jwt\0" + current_key(secret).encode()).digest()


class SecretBox:
    """Encrypts secrets stored in the database (connector passwords, generated keys).

    Its secret is a keyring (shared.keyring): the current key seals, every key opens. Given a
    function instead of the text, it asks it before each use, so a long-lived box follows the
    keyring file through a ``secrets rotate``.
    """

    def __init__(self, secret: str | Callable[[], str]) -> None:
        self._source = secret if callable(secret) else (lambda: secret)
        self._text: str | None = None
        self._fernets: list[Fernet] = []

    def _ring(self) -> list[Fernet]:
        text = self._source()
        if text != self._text:
            self._fernets = [_fernet(key) for key in keys_of(text)]
            self._text = text
        return self._fernets

    def seal(self, plaintext: bytes) -> str:
        """Encrypt and authenticate *plaintext* under the current key."""
        return self._ring()[0].encrypt(plaintext).decode()

    def open(self, sealed: str) -> bytes:
        """Decrypt what :meth:`seal` made with any key of the ring; ValueError if altered."""
        token = sealed.encode()
        for fernet in self._ring():
            try:
                return fernet.decrypt(token)
            except InvalidToken:
                continue
        raise ValueError("sealed secret does not verify")

    def is_current(self, sealed: str) -> bool:
        """Whether *sealed* opens with the current key (a rotation has nothing to do for it)."""
        try:
            self._ring()[0].decrypt(sealed.encode())
        except InvalidToken:
            return False
        return True


def _fernet(key: str) -> Fernet:
    digest = hashlib.sha256(b"certtoken-secretbox\0" + key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))
