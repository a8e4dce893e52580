"""``POST /certificate/decode``: what a PEM CSR or certificate says (for the web UI, any client)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.api.auth import Caller
from services.api.decoding import DecodeBody, decode
from services.api.envelope import ok
from services.api.params import body_doc, parse

router = APIRouter(prefix="/certificate", tags=["certificate"])


@router.post("/decode", openapi_extra=body_doc(DecodeBody))
async def decode_pem(request: Request, _caller: Caller) -> JSONResponse:
    """Decode a CSR or certificate; nothing is stored, any logged-in caller may ask."""
    return ok(decode(await parse(request, DecodeBody)))
