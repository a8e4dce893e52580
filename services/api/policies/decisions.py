"""What policies decide for a request (STUB: defaults only, until policies are evaluated)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from services.api.context import ApiContext
from shared.attestation import AttestationMode
from shared.security import Identity


class Action(StrEnum):
    """The certificate actions a role may be granted by ``user`` / ``admin`` policies."""

    ENROLL = "enrollCERTIFICATE"
    REVOKE = "revoke"
    DELETE = "delete"
    DOWNLOAD_PKCS12 = "certificate_download_pkcs12"


@dataclass(frozen=True)
class EnrollRules:
    """What the ``enroll`` (and user/admin) policies decide for one enrollment."""

    ca: str | None = None
    template: str | None = None
    subject_components: tuple[str, ...] = ()
    require_attestation: AttestationMode = AttestationMode.IGNORE
    attestation_ca_path: Path | None = None
    max_token_per_user: int | None = None
    max_active_token_per_user: int | None = None
    pkcs12_remove_after_download: bool = False


async def enroll_rules(ctx: ApiContext, caller: Identity, username: str, realm: str) -> EnrollRules:
    """The rules for *caller* enrolling a token for *username* in *realm*."""
    return EnrollRules(
        require_attestation=ctx.settings.require_attestation,
        attestation_ca_path=ctx.settings.attestation_ca_path,
    )


def choose_ca_template(
    rules: EnrollRules, ca: str | None, template: str | None
) -> tuple[str | None, str | None]:
    """The CA connector and template to use: the request's, or what a policy fixes."""
    return ca or rules.ca, template or rules.template


async def check_token_limits(
    ctx: ApiContext, rules: EnrollRules, username: str, realm: str
) -> None:
    """Forbidden when the owner has as many tokens as the policies allow."""


async def require_action(
    ctx: ApiContext, caller: Identity, action: Action, username: str, realm: str
) -> None:
    """Forbidden unless *caller* may take *action* on a token of *username* in *realm*."""
