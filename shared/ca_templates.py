"""Certificate templates: the options an admin sets, validated the same way by api and ca_worker."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from shared.pki import MIN_EC_BITS, MIN_RSA_BITS
from shared.san_rules import DEFAULT_SANS, OWNER_EMAIL, check_san_rules
from shared.validation import validated

DEFAULT_TEMPLATE = "default"
TEMPLATE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$"

KEY_USAGES = frozenset(
    {
        "digitalSignature",
        "nonRepudiation",
        "contentCommitment",
        "keyEncipherment",
        "dataEncipherment",
        "keyAgreement",
        "encipherOnly",
        "decipherOnly",
    }
)
EXTENDED_KEY_USAGES = frozenset(
    {"clientAuth", "emailProtection", "codeSigning", "timeStamping", "smartcardLogon"}
)

# CSR policy: the key types and signature hashes a template may allow, and its defaults.
CSR_KEY_TYPES = ("rsa", "ec", "ed25519", "ed448")
SIGNATURE_HASHES = ("sha224", "sha256", "sha384", "sha512", "sha3-256", "sha3-384", "sha3-512")
FORBIDDEN_HASHES = ("sha1", "md5")
DEFAULT_KEY_TYPES = ("rsa", "ec")
DEFAULT_SIGNATURE_HASHES = ("sha256", "sha384", "sha512")
DEFAULT_MAX_CSR_BYTES = 16384
MAX_CSR_BYTES = 65536
_DOTTED_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


class TemplateOptions(BaseModel):
    """What a template sets: the certificate's profile, names (shared.identity) and CSR rules."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    validity_days: int = Field(default=365, gt=0, le=10950)
    key_usage: tuple[str, ...] = ("digitalSignature", "keyEncipherment")
    extended_key_usage: tuple[str, ...] = ("clientAuth",)
    subject_components: tuple[Literal["email", "realm", "givenname", "surname"], ...] = ()
    csr_subject: Literal["replace", "refuse"] = "replace"
    admin_csr_subject: bool = False
    sans: dict[str, tuple[str, ...]] = Field(default_factory=lambda: dict(DEFAULT_SANS))
    approval: Literal["required", "none"] = "none"
    profile: str = Field(default="", max_length=120)
    key_types: tuple[str, ...] = DEFAULT_KEY_TYPES
    min_rsa_bits: int = Field(default=MIN_RSA_BITS, ge=MIN_RSA_BITS, le=16384)
    min_ec_bits: int = Field(default=MIN_EC_BITS, ge=MIN_EC_BITS, le=521)
    signature_hashes: tuple[str, ...] = DEFAULT_SIGNATURE_HASHES
    max_csr_bytes: int = Field(default=DEFAULT_MAX_CSR_BYTES, ge=1, le=MAX_CSR_BYTES)

    @model_validator(mode="before")
    @classmethod
    def _legacy_allowed_sans(cls, data: object) -> object:
        # Before value rules, ``allowed_sans`` listed SAN types; only e-mail converts safely.
        if not isinstance(data, dict) or "allowed_sans" not in data:
            return data
        data = dict(data)
        legacy = data.pop("allowed_sans")
        if legacy is None:
            return data
        if "sans" in data:
            raise ValueError("give sans only (allowed_sans is its older form)")
        kinds = _split_text(legacy) if isinstance(legacy, str) else legacy
        if not isinstance(kinds, list | tuple):
            raise ValueError("allowed_sans must be a list of SAN types")
        ruleless = [k for k in kinds if k != "email"]
        if ruleless:
            raise ValueError(
                f"allowed_sans: {', '.join(map(str, ruleless))} SANs need value rules; "
                "use sans, e.g. sans=DNS:*.corp.example"
            )
        data["sans"] = {"email": [OWNER_EMAIL]} if kinds else {}
        return data

    @field_validator("sans", mode="before")
    @classmethod
    def _sans(cls, value: object) -> object:
        # Form bodies give "TYPE:rule, TYPE:rule" (e.g. "email:owner, DNS:*.corp.example").
        if isinstance(value, str):
            rules: dict[str, list[str]] = {}
            for item in _split_text(value):
                kind, colon, rule = item.partition(":")
                if not colon:
                    raise ValueError(f"{item!r}: expected TYPE:rule, e.g. DNS:*.corp.example")
                rules.setdefault(kind.strip(), []).append(rule.strip())
            value = rules
        if not isinstance(value, dict):
            raise ValueError("expected an object of SAN type to value rules")
        return check_san_rules(value)

    @field_validator(
        "key_usage",
        "extended_key_usage",
        "subject_components",
        "key_types",
        "signature_hashes",
        mode="before",
    )
    @classmethod
    def _split(cls, value: object) -> object:
        # Form bodies carry lists as comma-separated text, as privacyIDEA's do.
        if isinstance(value, str):
            return tuple(_split_text(value))
        return value

    @field_validator("key_types")
    @classmethod
    def _key_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        chosen = _distinct(v.lower() for v in value)
        unknown = [v for v in chosen if v not in CSR_KEY_TYPES]
        if unknown:
            raise PydanticCustomError(
                "key_type",
                "unknown key type {unknown}; known: {known}",
                {"unknown": ", ".join(unknown), "known": ", ".join(CSR_KEY_TYPES)},
            )
        if not chosen:
            raise PydanticCustomError("key_type", "at least one key type is required")
        return chosen

    @field_validator("signature_hashes")
    @classmethod
    def _signature_hashes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        chosen = _distinct(v.lower() for v in value)
        for name in chosen:
            if name in FORBIDDEN_HASHES:
                raise PydanticCustomError(
                    "weak_hash", "{name} is not allowed (too weak)", {"name": name}
                )
            if name not in SIGNATURE_HASHES:
                raise PydanticCustomError(
                    "signature_hash",
                    "unknown hash {name}; known: {known}",
                    {"name": name, "known": ", ".join(SIGNATURE_HASHES)},
                )
        if not chosen:
            raise PydanticCustomError("signature_hash", "at least one hash is required")
        return chosen

    @field_validator("key_usage")
    @classmethod
    def _key_usage(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [u for u in value if u not in KEY_USAGES]
        if unknown:
            raise ValueError(
                f"unknown key usage {', '.join(unknown)}; known: {', '.join(sorted(KEY_USAGES))}"
            )
        return value

    @field_validator("extended_key_usage")
    @classmethod
    def _extended_key_usage(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for usage in value:
            if usage in ("serverAuth", "anyExtendedKeyUsage"):
                raise ValueError(f"{usage} is not allowed in a user certificate")
            if usage not in EXTENDED_KEY_USAGES and not _DOTTED_OID.match(usage):
                raise ValueError(
                    f"unknown extended key usage {usage!r}; known: "
                    f"{', '.join(sorted(EXTENDED_KEY_USAGES))} or a dotted OID"
                )
        return value


def _split_text(value: str) -> list[str]:
    """The items of comma-separated text."""
    return [part.strip() for part in value.split(",") if part.strip()]


def _distinct(values: Iterable[str]) -> tuple[str, ...]:
    """*values* without repeats, in their first order."""
    return tuple(dict.fromkeys(values))


def template_options(options: dict[str, Any]) -> TemplateOptions:
    """Stored options as a model; ValueError naming the field when they are invalid."""
    return validated(TemplateOptions, options, "template")
