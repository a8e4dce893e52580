"""Certificate-token vocabulary shared by the api and the ca_worker: pure code only."""

from __future__ import annotations

import secrets
from enum import StrEnum

TOKEN_TYPE = "certificate"
SERIAL_PREFIX = "CRT"
USER_RESOLVER = "internal"
"""The resolver name privacyIDEA-shaped answers give certtoken's internal user store."""


class RolloutState(StrEnum):
    """privacyIDEA's rollout states of a certificate token, plus certtoken's own.

    Tokens move between them only through ``shared.token_states.transition``.
    """

    SUBMITTED = "submitted"
    PENDING = "pending"
    ENROLLED = "enrolled"
    DENIED = "denied"
    FAILED = "failed"
    REVOKED = "revoked"


FINAL_FOR_INIT = frozenset(
    {RolloutState.ENROLLED, RolloutState.PENDING, RolloutState.DENIED, RolloutState.FAILED}
)
"""States that end the wait of ``POST /token/init``."""


def new_serial() -> str:
    """A token serial: ``CRT`` and eight hex digits."""
    return f"{SERIAL_PREFIX}{secrets.token_hex(4).upper()}"


class EventType(StrEnum):
    """Event names, privacyIDEA's spelling."""

    TOKEN_INIT = "token_init"
    TOKEN_UPDATE = "token_update"
    TOKEN_REVOKE = "token_revoke"
    TOKEN_DELETE = "token_delete"
    TOKEN_DISABLE = "token_disable"
    TOKEN_ENABLE = "token_enable"
    # Expiry notices (certtoken's own): a token's certificate, or a CA's, nears its end.
    CERTIFICATE_EXPIRING = "certificate_expiring"
    CA_EXPIRING = "ca_expiring"


JOB_CSR_SIGN = "csr.sign"
