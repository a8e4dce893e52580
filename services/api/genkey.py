"""``genkey=1``: the ca_worker makes the key pair; the owner downloads a PKCS#12."""

from __future__ import annotations

import base64
import logging
import secrets
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from services.api.admission import Admission
from services.api.context import ApiContext
from services.api.errors import ApiError, Conflict, Gone, NotFound, ParameterError
from services.api.policies import Action, EnrollRules, require_action
from services.api.schemas import TokenInit
from services.api.submission import enrolled_by, init_answer, submit
from shared.db.models import Token, TokenKey, utcnow
from shared.domain import RolloutState
from shared.echo import echo
from shared.jobs import KeySpec, SignRequest
from shared.pki import KEY_TYPES, MIN_RSA_BITS
from shared.security import Identity, SecretBox

log = logging.getLogger(__name__)

# privacyIDEA generates RSA 2048 keys for genkey certificate tokens.
DEFAULT_KEYTYPE = "rsa-2048"
RSA_SIZES = (2048, 3072, 4096)
PASSWORD_BYTES = 18
# Far above any offered size: a bound, so that no message repeats a huge number.
MAX_KEYSIZE = 16384


def choose_keytype(keytype: str | None, keysize: int | str | None) -> str:
    """The key type for *keytype* and privacyIDEA's *keysize* (RSA bits); 400 when unusable."""
    kind = (keytype or "").strip().lower()
    if kind and kind not in KEY_TYPES and kind != "rsa":
        raise ParameterError(
            f"keytype: unknown key type {echo(keytype)}; choose one of {', '.join(KEY_TYPES)}"
        )
    size = _bits(keysize)
    if size is None:
        return DEFAULT_KEYTYPE if kind in ("", "rsa") else kind
    if size < MIN_RSA_BITS:
        raise ParameterError(f"keysize: RSA keys below {MIN_RSA_BITS} bits are refused")
    if size not in RSA_SIZES:
        raise ParameterError(
            f"keysize: {size} bits is not offered; choose {', '.join(map(str, RSA_SIZES))}"
        )
    sized = f"rsa-{size}"
    if kind not in ("", "rsa", sized):
        raise ParameterError(f"keysize: {size} bits disagrees with keytype {echo(kind)}")
    return sized


def _bits(keysize: int | str | None) -> int | None:
    """*keysize* as a number, given as a number or a numeric string; None when absent."""
    if keysize is None or keysize == "":
        return None
    if isinstance(keysize, bool):
        raise ParameterError("keysize: must be a number of bits, e.g. 2048")
    if isinstance(keysize, int):
        size = keysize
    else:
        text = keysize.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 6:
            raise ParameterError("keysize: must be a number of bits, e.g. 2048")
        size = int(text)
    if not 0 < size <= MAX_KEYSIZE:
        raise ParameterError(f"keysize: must be a number of bits from 1 to {MAX_KEYSIZE}")
    return size


async def genkey_init(
    request: Request,
    data: TokenInit,
    ctx: ApiContext,
    owner: tuple[str, str],
    rules: EnrollRules,
    ca_template: tuple[str, str],
    caller: Identity,
    admission: Admission,
) -> JSONResponse:
    """Submit a genkey token; the answer carries the PKCS#12 password when none was given."""
    keytype = choose_keytype(data.keytype, data.keysize)
    generated = not data.pin
    password = secrets.token_urlsafe(PASSWORD_BYTES) if generated else str(data.pin)
    spec = KeySpec(
        keytype,
        tuple(rules.subject_components),
        SecretBox(ctx.settings.resolved_secret_key).seal(password.encode()),
    )
    # Never the password or the PIN: the info is shown in token lists and events.
    info: dict[str, Any] = {
        "description": data.description,
        "enrolled_by": enrolled_by(caller),
        "genkey": True,
        "keytype": keytype,
        "pkcs12_delete_after_download": rules.pkcs12_remove_after_download,
    }
    username, realm = owner
    ca, template = ca_template

    def sign_request(serial: str) -> SignRequest:
        return SignRequest(serial, username, realm, ca, template, "", info=info, keygen=spec)

    detail, made = await submit(request, ctx, sign_request, admission=admission)
    if not made:
        return init_answer(detail)
    detail["keytype"] = keytype
    if generated:
        # Returned this once; stored only sealed, and only until the PKCS#12 is built.
        detail["pkcs12_password"] = password
    if detail["rollout_state"] == RolloutState.ENROLLED:
        try:
            # The init answer is a download: only for a caller who may download.
            await require_action(ctx, caller, Action.DOWNLOAD_PKCS12, username, realm)
            download = await take_pkcs12(ctx, detail["serial"], rules.pkcs12_remove_after_download)
        except ApiError as exc:
            # Deleted or not there: the owner asks GET /token/<serial>/pkcs12 and learns why.
            log.warning(
                "PKCS#12 not in the init answer",
                extra={"serial": detail["serial"], "error": exc.message},
            )
        else:
            detail["pkcs12"] = download["pkcs12"]
    return init_answer(detail)


async def download(ctx: ApiContext, caller: Identity, token: Token) -> dict[str, Any]:
    """*token*'s PKCS#12 for *caller*, if the download action allows; counted as a download."""
    await require_action(ctx, caller, Action.DOWNLOAD_PKCS12, token.username, token.realm)
    delete_after = bool(token.info.get("pkcs12_delete_after_download"))
    return await take_pkcs12(ctx, token.serial, delete_after)


async def listed_pkcs12(ctx: ApiContext, caller: Identity, token: Token) -> str | None:
    """The PKCS#12 a token list by serial offers as ``info.pkcs12``: a download, or None."""
    if not token.info.get("genkey"):
        return None
    try:
        return str((await download(ctx, caller, token))["pkcs12"])
    except ApiError:
        # Refused, deleted or not issued: the list omits it; the download route says why.
        return None


async def take_pkcs12(ctx: ApiContext, serial: str, delete_after: bool) -> dict[str, Any]:
    """The PKCS#12 of *serial* (base64 DER): counts the download, deletes it when told to."""
    async with ctx.db.write() as session:
        key = await session.get(TokenKey, serial, with_for_update=True)
        if key is None:
            raise NotFound(f"serial: token {serial} has no server-generated key")
        if key.deleted_at is not None:
            raise Gone(f"serial: the PKCS#12 of token {serial} was deleted")
        if not key.pkcs12:
            token = await session.get(Token, serial)
            state = token.rollout_state if token is not None else ""
            if state in (RolloutState.SUBMITTED, RolloutState.PENDING):
                raise Conflict(f"serial: the certificate of token {serial} is not issued yet")
            raise Conflict(f"serial: token {serial} is {state}; it has no PKCS#12")
        sealed = key.pkcs12
        keytype = key.keytype
        key.downloads += 1
        if delete_after:
            _drop(key)
    der = SecretBox(ctx.settings.resolved_secret_key).open(sealed)
    log.info("PKCS#12 downloaded", extra={"serial": serial, "deleted": delete_after})
    return {"serial": serial, "pkcs12": base64.b64encode(der).decode("ascii"), "keytype": keytype}


async def delete_pkcs12(ctx: ApiContext, serial: str) -> dict[str, Any]:
    """Drop the key, password and PKCS#12 of *serial* for good; deleting twice is fine."""
    async with ctx.db.write() as session:
        key = await session.get(TokenKey, serial, with_for_update=True)
        if key is None:
            raise NotFound(f"serial: token {serial} has no server-generated key")
        if key.deleted_at is None:
            _drop(key)
        deleted_at = key.deleted_at
    assert deleted_at is not None
    log.info("PKCS#12 deleted", extra={"serial": serial})
    return {"serial": serial, "deleted": True, "deleted_at": deleted_at.isoformat()}


def _drop(key: TokenKey) -> None:
    key.private_key = ""
    key.password = ""
    key.pkcs12 = ""
    key.deleted_at = utcnow()
