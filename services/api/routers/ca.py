"""``/ca/<name>/``: the CA manager's requests, and what a local CA publishes (CRL, OCSP, cert)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.api.auth import Admin, Context
from services.api.context import ApiContext
from services.api.decisions import Verdict, decision_job, open_request, record_decision
from services.api.envelope import ok
from services.api.errors import NotFound, ParameterError
from services.api.held_requests import request_view
from services.api.jobs import job_row
from services.api.ocsp import OCSPResponder
from services.api.params import body_doc, parse
from services.api.waiter import await_outcome, states
from shared.ca_material import chain_pems, generation_of
from shared.db.models import CAConnector, CAGeneration, CAPublication, CARequest, Token
from shared.echo import echo
from shared.security import SecretBox

router = APIRouter(prefix="/ca", tags=["ca"])

OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"
MAX_OCSP_REQUEST = 16 * 1024
# A CA generation's number in a path (1 before any rollover).
Generation = Annotated[int, Path(ge=1, le=1_000_000)]


class DenyBody(BaseModel):
    """``POST /ca/<name>/requests/<id>/deny``."""

    model_config = ConfigDict(extra="ignore")

    reason: str = Field(default="", max_length=1000)


@router.get("/{name}/requests")
async def list_requests(
    name: str,
    ctx: Context,
    _admin: Admin,
    status: Literal["pending", "issued", "denied", "withdrawn"] | None = None,
) -> JSONResponse:
    """The CA's requests, oldest first; ``?status=pending`` for those awaiting a decision."""
    async with ctx.db.read() as session:
        if await session.get(CAConnector, name) is None:
            raise NotFound(f"ca: no CA connector named {echo(name)}")
        query = select(CARequest).where(CARequest.ca == name)
        if status:
            query = query.where(CARequest.status == status)
        rows = (await session.scalars(query.order_by(CARequest.created_at))).all()
        serials = [row.token_serial for row in rows]
        infos: dict[str, dict[str, Any]] = {}
        if serials:
            found = await session.execute(
                select(Token.serial, Token.info).where(Token.serial.in_(serials))
            )
            infos = {serial: dict(info or {}) for serial, info in found}
    views = [request_view(row, infos.get(row.token_serial)) for row in rows]
    return ok({"requests": views, "count": len(rows)})


@router.post("/{name}/requests/{request_id}/approve")
async def approve(name: str, request_id: str, ctx: Context, admin: Admin) -> JSONResponse:
    """Approve a held request: the CA issues, the token becomes enrolled."""
    return await _decide(ctx, name, request_id, "approve", admin.username, "")


@router.post("/{name}/requests/{request_id}/deny", openapi_extra=body_doc(DenyBody))
async def deny(
    request: Request, name: str, request_id: str, ctx: Context, admin: Admin
) -> JSONResponse:
    """Deny a held request with a reason: the token becomes denied."""
    body = await parse(request, DenyBody)
    return await _decide(ctx, name, request_id, "deny", admin.username, body.reason)


async def _decide(
    ctx: ApiContext, ca: str, request_id: str, decision: Verdict, admin: str, reason: str
) -> JSONResponse:
    held = await open_request(ctx.db, ca, request_id, decision)
    kind, data = decision_job(held, decision, admin, reason)
    expected = ctx.waiter.expect(held.token_serial, states("enrolled", "denied", "failed"))
    try:
        row = job_row(ctx, kind, request_id, data)
        await record_decision(ctx.db, held, decision, admin, row)
        await ctx.relay.send([row])
        detail = (await await_outcome(ctx, expected)).detail
    finally:
        ctx.waiter.discard(expected)
    detail["request_id"] = request_id
    return ok(True, detail)


# --- published without authentication --------------------------------------------------------


@router.get("/{name}/cacert")
async def cacert(
    name: str,
    ctx: Context,
    format: Literal["pem", "der"] = Query(default="pem"),
    chain: bool = Query(default=False),
) -> Response:
    """The CA certificate: PEM, or DER with ``?format=der``; ``?chain=1`` adds the certificates
    above it up to the root (a PEM bundle, the CA's own first)."""
    async with ctx.db.read() as session:
        connector = await session.get(CAConnector, name)
    if connector is None or not connector.cacert:
        raise NotFound(f"ca: no CA certificate for {echo(name)}")
    return _certificate(connector.cacert, chain_pems(connector.options), format, chain)


@router.get("/{name}/cacert/{generation}")
async def cacert_of_generation(
    name: str,
    generation: Generation,
    ctx: Context,
    format: Literal["pem", "der"] = Query(default="pem"),
    chain: bool = Query(default=False),
) -> Response:
    """The certificate of one generation of the CA (the current one, or one a rollover
    replaced), as ``/cacert`` answers it."""
    async with ctx.db.read() as session:
        connector = await session.get(CAConnector, name)
        earlier = await _generation(session, name, generation)
    if (
        connector is not None
        and connector.cacert
        and generation_of(connector.options) == generation
    ):
        return _certificate(connector.cacert, chain_pems(connector.options), format, chain)
    if connector is None or earlier is None:
        raise NotFound(f"generation: CA {echo(name)} has no generation {generation}")
    return _certificate(earlier.cacert, chain_pems(earlier.options), format, chain)


def _certificate(pem: str, above: tuple[str, ...], format: str, chain: bool) -> Response:
    """A CA certificate as DER or PEM, with the chain above it on request (PEM only)."""
    if format == "der":
        if chain:
            raise ParameterError("chain: the chain is a PEM bundle; DER is the CA certificate")
        cert = x509.load_pem_x509_certificate(pem.encode())
        return Response(
            cert.public_bytes(serialization.Encoding.DER), media_type="application/pkix-cert"
        )
    if chain:
        pem = "".join((pem, *above))
    return Response(pem, media_type="application/x-pem-file")


@router.get("/{name}/crl")
async def crl(
    name: str, ctx: Context, format: Literal["pem", "der"] = Query(default="der")
) -> Response:
    """The CRL of the certificates that name this URL: generation 1's (until it is retired),
    else the current generation's. DER, or PEM with ``?format=pem``."""
    async with ctx.db.read() as session:
        publication = await session.get(CAPublication, name)
        first = await _generation(session, name, 1)
    if first is not None and first.retired_at is None and first.crl is not None:
        return _crl(first.crl, format)
    if publication is None:
        raise NotFound(f"ca: {echo(name)} publishes no CRL (not a local CA, or not published yet)")
    return _crl(publication.crl, format)


@router.get("/{name}/crl/{generation}")
async def crl_of_generation(
    name: str,
    generation: Generation,
    ctx: Context,
    format: Literal["pem", "der"] = Query(default="der"),
) -> Response:
    """The CRL one generation of the CA signs, for the certificates it issued."""
    async with ctx.db.read() as session:
        publication = await session.get(CAPublication, name)
        earlier = await _generation(session, name, generation)
    if publication is not None and publication.generation == generation:
        return _crl(publication.crl, format)
    if earlier is not None and earlier.retired_at is not None:
        raise NotFound(
            f"generation: generation {generation} of CA {echo(name)} is retired "
            "(none of its certificates is unexpired): it publishes no more CRLs"
        )
    if earlier is None or earlier.crl is None:
        raise NotFound(
            f"generation: CA {echo(name)} publishes no CRL for generation {generation} "
            "(no such generation, or not published yet)"
        )
    return _crl(earlier.crl, format)


async def _generation(session: AsyncSession, name: str, generation: int) -> CAGeneration | None:
    """An earlier generation of CA *name*."""
    found: CAGeneration | None = await session.scalar(
        select(CAGeneration).where(CAGeneration.ca == name, CAGeneration.generation == generation)
    )
    return found


def _crl(der: bytes, format: str) -> Response:
    """A stored DER CRL, as DER or PEM."""
    if format == "pem":
        pem = x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM)
        return Response(pem, media_type="application/x-pem-file")
    return Response(der, media_type="application/pkix-crl")


@router.post("/{name}/ocsp")
async def ocsp_post(name: str, request: Request, ctx: Context) -> Response:
    """OCSP over HTTP POST (RFC 6960 A.1): the DER request is the body."""
    body = await request.body()
    if len(body) > MAX_OCSP_REQUEST:
        raise ParameterError(f"body: an OCSP request is at most {MAX_OCSP_REQUEST} bytes")
    return await _ocsp(request, ctx, name, body)


@router.get("/{name}/ocsp/{encoded:path}")
async def ocsp_get(name: str, encoded: str, request: Request, ctx: Context) -> Response:
    """OCSP over HTTP GET: the base64 DER request (URL-encoded) is the last path part."""
    try:
        der = base64.b64decode(encoded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ParameterError("request: not a base64-encoded OCSP request") from None
    return await _ocsp(request, ctx, name, der)


async def _ocsp(request: Request, ctx: ApiContext, name: str, der: bytes) -> Response:
    responder: OCSPResponder | None = getattr(request.app.state, "ocsp", None)
    if responder is None:
        settings = ctx.settings
        responder = OCSPResponder(ctx.db, SecretBox(lambda: settings.resolved_secret_key))
        request.app.state.ocsp = responder
    answer = await responder.respond(name, der)
    return Response(answer, media_type=OCSP_RESPONSE)
