"""``genkey=1``: the ca_worker makes the key pair; the owner downloads a PKCS#12 (STUB)."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from services.api.context import ApiContext
from services.api.errors import ParameterError
from services.api.policies import EnrollRules
from services.api.schemas import TokenInit


def wants_genkey(data: TokenInit) -> bool:
    """Whether the request asks the server to generate the key pair."""
    return str(data.genkey or "").strip().lower() not in ("", "0", "false", "no")


async def genkey_init(
    request: Request,
    data: TokenInit,
    ctx: ApiContext,
    owner: tuple[str, str],
    rules: EnrollRules,
    ca_template: tuple[str, str],
    enrolled_by: str,
) -> JSONResponse:
    """Submit a genkey token; the answer carries the PKCS#12 password when none was given."""
    raise ParameterError("genkey: server-side key generation is not served yet")
