"""Certificate templates: the options an admin sets, validated the same way by api and ca_worker."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
SAN_TYPES = ("DNS", "email", "IP", "URI")
_DOTTED_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


class TemplateOptions(BaseModel):
    """What a template sets; ``allowed_sans`` None keeps every SAN of the CSR."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    validity_days: int = Field(default=365, gt=0, le=10950)
    key_usage: tuple[str, ...] = ("digitalSignature", "keyEncipherment")
    extended_key_usage: tuple[str, ...] = ("clientAuth",)
    subject_components: tuple[Literal["email", "realm"], ...] = ()
    allowed_sans: tuple[Literal["DNS", "email", "IP", "URI"], ...] | None = None
    approval: Literal["required", "none"] = "none"
    profile: str = Field(default="", max_length=120)

    @field_validator(
        "key_usage", "extended_key_usage", "subject_components", "allowed_sans", mode="before"
    )
    @classmethod
    def _split(cls, value: object) -> object:
        # Form bodies carry lists as comma-separated text, as privacyIDEA's do.
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

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


def template_options(options: dict[str, Any]) -> TemplateOptions:
    """Stored options as a model; ValueError naming the field when they are invalid."""
    return validated(TemplateOptions, options, "template")
