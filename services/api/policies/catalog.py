"""The policy scopes and the actions each knows, with how an action's value is read.

Action names are privacyIDEA's (certificate token part). A value is what the action sets:
``True`` for a plain action (or ``False`` when given as ``name=false``), an ``int`` for limits,
else a string. Readers are pure: they check form only; whether a path exists or a CA
connector is configured is checked by the policy routes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from enum import StrEnum

from shared.attestation import AttestationMode
from shared.echo import echo
from shared.identity import SUBJECT_COMPONENTS

ActionValue = bool | int | str

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$"
MAX_LIMIT = 1_000_000
MAX_PATH = 1024


class Scope(StrEnum):
    """Where a policy acts: what enrollment sets, what users and what admins may do."""

    ENROLL = "enrollment"
    USER = "user"
    ADMIN = "admin"


# certtoken's earlier name of the enrollment scope: accepted on input and in stored rows.
SCOPE_ALIASES: Mapping[str, Scope] = {"enroll": Scope.ENROLL}


def scope_named(name: str) -> Scope:
    """The scope *name* stands for (privacyIDEA's name or an alias); ValueError if none."""
    alias = SCOPE_ALIASES.get(name)
    return alias if alias is not None else Scope(name)


def scope_names(scope: Scope) -> list[str]:
    """Every name *scope* may be stored under: its own and its aliases."""
    return [scope.value, *(name for name, s in SCOPE_ALIASES.items() if s == scope)]


class Action(StrEnum):
    """The certificate actions a role may be granted by ``user`` / ``admin`` policies."""

    ENROLL = "enrollCERTIFICATE"
    REVOKE = "revoke"
    DELETE = "delete"
    DISABLE = "disable"
    ENABLE = "enable"
    DOWNLOAD_PKCS12 = "certificate_download_pkcs12"


CA_CONNECTOR = "certificate_ca_connector"
TEMPLATE = "certificate_template"
SUBJECT_COMPONENT = "certificate_request_subject_component"
REQUIRE_ATTESTATION = "certificate_require_attestation"
MAX_TOKEN = "max_token_per_user"
MAX_ACTIVE_TOKEN = "max_active_token_per_user"
PKCS12_DELETE = "certificate_pkcs12_delete_after_download"
UPLOAD_REQUIRE_PROOF = "certificate_upload_require_proof"
TRUSTED_CA_PATH = "certificate_trusted_Attestation_CA_path"

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})

Reader = Callable[[object], ActionValue]


def read_flag(raw: object) -> bool:
    """A boolean: ``True``/``False``, or "true"/"false"/"1"/"0" (also yes/no, on/off)."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ValueError(f"must be true or false, not {echo(raw)}")


def read_count(raw: object) -> int:
    """A whole number from 1 to MAX_LIMIT, given as a number or as digits."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.strip().isdigit():
        value = int(raw.strip())
    else:
        raise ValueError(f"must be a whole number from 1 to {MAX_LIMIT}, not {echo(raw)}")
    if not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"must be a whole number from 1 to {MAX_LIMIT}, not {echo(value)}")
    return value


def _text(raw: object) -> str:
    if isinstance(raw, bool) or not isinstance(raw, str) or not raw.strip():
        raise ValueError("needs a value (name=value)")
    return raw.strip()


def _read_name(raw: object) -> str:
    value = _text(raw)
    if not re.fullmatch(NAME, value):
        raise ValueError(f"must be a name matching {NAME}, not {echo(value)}")
    return value


def _read_components(raw: object) -> str:
    """Owner attributes (email, realm, ...), space or comma separated (or a list); sorted."""
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        words = [w for item in raw for w in re.split(r"[\s,]+", item) if w]
    else:
        words = [w for w in re.split(r"[\s,]+", _text(raw)) if w]
    unknown = [w for w in words if w not in SUBJECT_COMPONENTS]
    if unknown or not words:
        raise ValueError(
            f"must be among {', '.join(SUBJECT_COMPONENTS)} (space separated), "
            f"not {echo(unknown[0] if unknown else raw)}"
        )
    return " ".join(sorted(set(words)))


def _read_mode(raw: object) -> str:
    value = _text(raw)
    modes = [m.value for m in AttestationMode]
    if value not in modes:
        raise ValueError(f"must be one of {', '.join(modes)}, not {echo(value)}")
    return value


def _read_path(raw: object) -> str:
    value = _text(raw)
    if len(value) > MAX_PATH or "\x00" in value:
        raise ValueError(f"must be a path of at most {MAX_PATH} characters")
    if not value.startswith("/"):
        raise ValueError(f"must be an absolute path, not {echo(value, 160)}")
    return value


ACTIONS: Mapping[Scope, Mapping[str, Reader]] = {
    Scope.ENROLL: {
        CA_CONNECTOR: _read_name,
        TEMPLATE: _read_name,
        SUBJECT_COMPONENT: _read_components,
        REQUIRE_ATTESTATION: _read_mode,
        MAX_TOKEN: read_count,
        MAX_ACTIVE_TOKEN: read_count,
        PKCS12_DELETE: read_flag,
        UPLOAD_REQUIRE_PROOF: read_flag,
    },
    Scope.USER: {TRUSTED_CA_PATH: _read_path, **{a.value: read_flag for a in Action}},
    Scope.ADMIN: {TRUSTED_CA_PATH: _read_path, **{a.value: read_flag for a in Action}},
}


def read_action(scope: Scope, name: str, raw: object) -> ActionValue:
    """The value of action *name* in *scope*; ValueError naming the ``action`` field."""
    known = ACTIONS[scope]
    reader = known.get(name)
    if reader is None:
        raise ValueError(
            f"action: unknown action {echo(name)} in scope {scope.value!r}; "
            f"known: {', '.join(sorted(known))}"
        )
    try:
        return reader(raw)
    except ValueError as exc:
        raise ValueError(f"action: {name} {exc}") from None
