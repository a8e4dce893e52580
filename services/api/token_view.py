"""A token as privacyIDEA 3.14 lists it, with certtoken's own state kept alongside."""

from __future__ import annotations

import zlib
from collections.abc import Collection
from datetime import datetime
from typing import Any

from shared.db.models import Token
from shared.domain import SERIAL_PREFIX, USER_RESOLVER, RolloutState
from shared.token_events import CA_DETAIL
from shared.token_states import DISABLED, is_active, state_of

# privacyIDEA's values for the counter and OTP fields a certificate token has but never uses.
OTP_DEFAULTS: dict[str, Any] = {
    "count": 0,
    "count_window": 10,
    "failcount": 0,
    "maxfail": 10,
    "otplen": 6,
    "sync_window": 1000,
}
TOKENKIND = "software"
CERTTOKEN_STATE = "certtoken_state"
"""The extra key holding certtoken's own rollout state (``revoked`` among others)."""


def token_id(serial: str) -> int:
    """A stable integer id for *serial*: the hex digits of certtoken's ``CRT`` serials."""
    digits = serial.removeprefix(SERIAL_PREFIX)
    if serial.startswith(SERIAL_PREFIX) and digits and len(digits) <= 8:
        try:
            return int(digits, 16)
        except ValueError:
            pass
    # Serials of another form (none are made today) stay apart from the hex range's ids.
    return (1 << 32) + zlib.crc32(serial.encode())


def shown_state(state: str) -> str:
    """privacyIDEA's ``rollout_state`` for a stored one: a revoked certificate stays enrolled."""
    return RolloutState.ENROLLED.value if state == RolloutState.REVOKED else state


def stored_states(shown: RolloutState) -> Collection[str]:
    """The stored states a ``rollout_state`` filter matches, as privacyIDEA shows them."""
    if shown == RolloutState.ENROLLED:
        return (RolloutState.ENROLLED.value, RolloutState.REVOKED.value)
    return (shown.value,)


def _timestamp(moment: datetime) -> str:
    """privacyIDEA's info dates: ISO 8601 to the second with the UTC offset."""
    return moment.replace(microsecond=0).isoformat()


HELD_BY = "held_by"
"""The extra info key of a pending token: who holds its request (``certtoken`` or ``ca``)."""


def token_view(
    token: Token, user_id: int | None, *, admin: bool = False, held_by: str | None = None
) -> dict[str, Any]:
    """*token* with every key privacyIDEA lists; *user_id* is its owner's id when known."""
    revoked = token.rollout_state == RolloutState.REVOKED
    created = _timestamp(token.created_at)
    info: dict[str, Any] = {"CA": token.ca, **token.info}
    info.pop(DISABLED, None)  # shown as active=false
    if not admin:
        info.pop(CA_DETAIL, None)
    if token.template:
        info["template"] = token.template
    if token.certificate:
        info["certificate"] = token.certificate
    if token.request:
        info["request"] = token.request
    if held_by:
        info[HELD_BY] = held_by
    info.setdefault("creation_date", created)
    info.setdefault("tokenkind", TOKENKIND)
    if token.username:
        info.setdefault("assignment_date", created)
    owned = bool(token.username)
    return {
        "id": token_id(token.serial),
        "serial": token.serial,
        "tokentype": token.tokentype,
        "rollout_state": shown_state(token.rollout_state),
        CERTTOKEN_STATE: token.rollout_state,
        "active": is_active(state_of(token.rollout_state), token.info),
        "revoked": revoked,
        "locked": revoked,
        "username": token.username,
        "user_realm": token.realm,
        "user_id": str(user_id) if owned and user_id is not None else "",
        "resolver": USER_RESOLVER if owned else "",
        "realms": [token.realm] if token.realm else [],
        "description": str(token.info.get("description", "")),
        **OTP_DEFAULTS,
        "tokengroup": [],
        "container_serial": "",
        "user_editable": False,
        "settable_info_keys": [],
        "readonly_info_keys": list(info),
        "undeletable_info_keys": list(info),
        "info": info,
        "created": token.created_at.isoformat(),
    }


def with_pkcs12(view: dict[str, Any], pkcs12: str) -> dict[str, Any]:
    """*view* offering *pkcs12* (base64 DER) as privacyIDEA does, under ``info.pkcs12``."""
    view["info"]["pkcs12"] = pkcs12
    for key in ("readonly_info_keys", "undeletable_info_keys"):
        view[key] = [*view[key], "pkcs12"]
    return view
