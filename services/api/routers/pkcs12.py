"""``/token/<serial>/pkcs12``: download or delete a genkey token's PKCS#12."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.api.auth import Caller, Context
from services.api.envelope import ok
from services.api.genkey import delete_pkcs12, download
from services.api.tokens import token_for

router = APIRouter(prefix="/token", tags=["token"])


@router.get("/{serial}/pkcs12")
async def download_pkcs12(serial: str, ctx: Context, caller: Caller) -> JSONResponse:
    """The token's PKCS#12 (base64 DER), for its owner or an admin; counted as a download."""
    return ok(await download(ctx, caller, await token_for(ctx, caller, serial)))


@router.post("/{serial}/pkcs12/delete")
async def remove_pkcs12(serial: str, ctx: Context, caller: Caller) -> JSONResponse:
    """Delete the token's key and PKCS#12 for good, for its owner or an admin."""
    await token_for(ctx, caller, serial)
    return ok(True, await delete_pkcs12(ctx, serial))
