"""``GET /signature/publickey``: the public key that verifies the answers' ``signature``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.api.errors import NotFound
from services.api.signing import PUBLIC_KEY_PATH

router = APIRouter(tags=["signature"])


@router.get(PUBLIC_KEY_PATH)
async def public_key(request: Request) -> Response:
    """The RSA public key (PEM, SubjectPublicKeyInfo) of the signed answers; no login needed."""
    signer = getattr(request.app.state, "signer", None)
    if signer is None:
        raise NotFound("signature: this server does not sign its answers")
    return Response(signer.public_pem, media_type="application/x-pem-file")
