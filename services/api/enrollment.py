"""Stores enrollment requests: many concurrent requests share one transaction."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from sqlalchemy import bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from services.api.admission import Admission, Candidate, admit_in
from services.api.errors import ApiError, ParameterError
from services.api.idempotency import Replay, earlier
from services.api.uploads import HELD
from shared.attestation import (
    AttestationError,
    AttestationMode,
    load_trust_store,
    parse_certificates,
    verify_attestation,
)
from shared.batching import Batcher
from shared.ca_material import not_ready_reason
from shared.ca_templates import DEFAULT_TEMPLATE, TemplateOptions, template_options
from shared.csr_rules import keytype_violation
from shared.db.direct import prebuilt
from shared.db.models import CAConnector, CATemplate, OutboxMessage, Token, User, utcnow
from shared.db.session import Database, Executor
from shared.domain import JOB_CSR_SIGN
from shared.events import new_event
from shared.identity import OWNER_ATTRIBUTES, Refused, decide, owner_of_job, owner_subject
from shared.jobs import SignRequest
from shared.messaging.outbox import insert_outbox, outbox_message
from shared.messaging.topology import (
    CSR_GENKEY,
    CSR_SIGN,
    EVENTS_EXCHANGE,
    JOBS_EXCHANGE,
    event_routing_key,
)
from shared.pki import CSRError, name_text, parse_csr
from shared.token_events import init_event_data
from shared.token_states import SUBMITTED, Trigger, transition

SOURCE = "certtoken/api"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnrollIntent:
    """A validated request to store a token with its signing job."""

    request: SignRequest
    correlation_id: str
    # The request's CSR as the route parsed it already, so the batch need not parse it again.
    csr: x509.CertificateSigningRequest | None = None
    admission: Admission = field(default_factory=Admission)


@dataclass(frozen=True)
class Upload:
    """A validated uploaded certificate to store as an enrolled token."""

    request: SignRequest
    certificate: str
    correlation_id: str
    # Issuer and serial (shared.pki.certificate_id): a certificate belongs to one token only.
    certificate_id: str
    admission: Admission = field(default_factory=Admission)


class SerialTaken(Exception):
    """The random serial is in use already; the caller draws another."""


class EnrollmentStore:
    """Writes tokens and their ``csr.sign`` jobs, a batch per transaction (group commit)."""

    def __init__(self, db: Database, lease: timedelta) -> None:
        self._db = db
        self._lease = lease
        self._batcher: Batcher[EnrollIntent, OutboxMessage | Replay] = Batcher(self._flush)

    async def store(self, intent: EnrollIntent) -> OutboxMessage | Replay:
        """Store *intent*; return its job for the caller to publish, or the token its key made.

        400 for bad references, 403 over a token limit, 409 for a key used with another body.
        """
        return await self._batcher.submit(intent)

    async def _flush(self, intents: list[EnrollIntent]) -> list[OutboxMessage | Replay | Exception]:
        # Checks read outside the write lock; a serial taken meanwhile still fails on the
        # primary key (IntegrityError: drawn again). Limits and keys are decided under it.
        async with self._db.read_core() as connection:
            found = await _lookups(connection, [i.request for i in intents])
        results: list[OutboxMessage | Replay | Exception] = []
        checked: list[tuple[int, SignRequest, OutboxMessage, Candidate]] = []
        for intent in intents:
            try:
                request = _check(intent.request, found, intent.csr)
            except (ParameterError, SerialTaken) as exc:
                results.append(exc)
                continue
            found.taken.add(request.serial)
            event = new_event(
                JOB_CSR_SIGN, SOURCE, request.serial, request.to_data(), intent.correlation_id
            )
            key = CSR_GENKEY if request.keygen is not None else CSR_SIGN
            job = outbox_message(JOBS_EXCHANGE, key, event, self._lease)
            checked.append((len(results), request, job, _candidate(request, intent.admission)))
            results.append(job)
        if not checked:
            return results
        now = utcnow()
        async with self._db.write_core() as connection:
            verdicts = await admit_in(connection, [candidate for *_, candidate in checked])
            tokens: list[dict[str, Any]] = []
            jobs: list[OutboxMessage] = []
            for (index, request, job, _), verdict in zip(checked, verdicts, strict=True):
                if verdict is not None:
                    results[index] = verdict
                    continue
                tokens.append(_token_values(request, now))
                jobs.append(job)
            if tokens:
                await connection.execute(_INSERT_TOKENS, tokens)
                await insert_outbox(connection, jobs)
        return results

    async def store_upload(self, upload: Upload) -> OutboxMessage | Replay:
        """Store an uploaded certificate's token, enrolled; return its ``token_init`` event.

        Or the token an earlier request with the same key made; 403 over a token limit.
        """
        async with self._db.read() as session:
            found = await _lookups(session, [upload.request])
            held = await _holder(session, upload.certificate_id)
        _check(upload.request, found)
        if held:
            raise ParameterError(HELD)
        request = upload.request
        stored = transition(None, Trigger.UPLOAD, request.info)
        assert stored.state is not None
        assert stored.emit is not None
        data = init_event_data(request, stored.state, stored.info, upload.certificate)
        event = new_event(stored.emit, SOURCE, request.serial, data, upload.correlation_id)
        row = outbox_message(EVENTS_EXCHANGE, event_routing_key(event.type), event, self._lease)
        values = _token_values(request, utcnow())
        values.update(
            rollout_state=stored.state.value,
            certificate=upload.certificate,
            certificate_id=upload.certificate_id,
        )
        try:
            async with self._db.write() as session:
                [verdict] = await admit_in(session, [_candidate(request, upload.admission)])
                if isinstance(verdict, ApiError):
                    raise verdict
                if verdict is not None:
                    return verdict
                await session.execute(insert(Token), [values])
                await insert_outbox(session, [row])
        except IntegrityError:
            # A concurrent request with the same key (in another process) won its primary key;
            # or a concurrent upload of the same certificate won the unique index; anything
            # else is a serial collision, which the caller draws again.
            replay = await earlier(self._db, upload.admission.claim)
            if replay is not None:
                return replay
            async with self._db.read() as session:
                if await _holder(session, upload.certificate_id):
                    raise ParameterError(HELD) from None
            raise
        return row


def _candidate(request: SignRequest, admission: Admission) -> Candidate:
    return Candidate(request.serial, (request.username, request.realm), admission)


async def _holder(session: Executor, identity: str) -> str | None:
    """The serial of the token holding the certificate *identity*, if any."""
    found: str | None = await session.scalar(
        select(Token.serial).where(Token.certificate_id == identity)
    )
    return found


@dataclass(frozen=True)
class _Unusable:
    """A stored template whose options no longer validate: its requests are refused."""

    reason: str


Known = dict[tuple[str, str], TemplateOptions | _Unusable]


@dataclass(frozen=True)
class _Found:
    """What a batch's checks read: templates, CA types, owners, serials in use."""

    known: Known  # (CA, template) options; template "" for the CA's default
    ca_types: dict[str, str]
    owners: dict[tuple[str, str], dict[str, str]]  # (login, realm) to OWNER_ATTRIBUTES
    taken: set[str]
    not_ready: dict[str, str]  # CA to why it cannot issue yet


# Statements built once, not per call (see shared.db.session and shared.db.direct).
_CONNECTORS = prebuilt(
    select(CAConnector.name, CAConnector.type, CAConnector.options).where(
        CAConnector.name.in_(bindparam("cas", expanding=True))
    )
)
_TEMPLATES = prebuilt(
    select(CATemplate.ca, CATemplate.name, CATemplate.options).where(
        CATemplate.ca.in_(bindparam("cas", expanding=True)),
        CATemplate.name.in_(bindparam("names", expanding=True)),
    )
)
_OWNERS = prebuilt(
    select(User.username, User.realm, *(getattr(User, name) for name in OWNER_ATTRIBUTES)).where(
        User.username.in_(bindparam("usernames", expanding=True))
    )
)
_TAKEN = prebuilt(
    select(Token.serial).where(Token.serial.in_(bindparam("serials", expanding=True)))
)
_INSERT_TOKENS = prebuilt(insert(Token))


async def _lookups(session: Executor, requests: list[SignRequest]) -> _Found:
    """What the checks of *requests* need, read in one transaction."""
    cas = list({r.ca for r in requests})
    connectors = (await session.execute(_CONNECTORS, {"cas": cas})).all()
    ca_types = {name: ca_type for name, ca_type, _ in connectors}
    not_ready = {
        name: reason
        for name, _, options in connectors
        if (reason := not_ready_reason(name, options)) is not None
    }
    known: Known = {(name, ""): TemplateOptions() for name in ca_types}
    named = list({r.template for r in requests if r.template and r.template != DEFAULT_TEMPLATE})
    if named:
        rows = await session.execute(_TEMPLATES, {"cas": cas, "names": named})
        for ca, name, stored in rows:
            try:
                known[(ca, name)] = template_options(dict(stored))
            except ValueError as exc:
                # Stored before a rule tightened: refuse its requests rather than skip the rules.
                log.error(
                    "template options invalid",
                    extra={"ca": ca, "template": name, "error": str(exc)},
                )
                known[(ca, name)] = _Unusable(str(exc))
    users = await session.execute(_OWNERS, {"usernames": list({r.username for r in requests})})
    owners = {
        (username, realm): dict(zip(OWNER_ATTRIBUTES, values, strict=True))
        for username, realm, *values in users
    }
    taken = set(await session.scalars(_TAKEN, {"serials": [r.serial for r in requests]}))
    return _Found(known, ca_types, owners, taken, not_ready)


def _check(
    request: SignRequest, found: _Found, csr: x509.CertificateSigningRequest | None = None
) -> SignRequest:
    """*request* with the subject certtoken decided; raise on anything it may not be."""
    # An uploaded certificate needs no CA (the route requires one for a CSR).
    known = found.known
    if request.ca and (request.ca, "") not in known:
        raise ParameterError(f"ca: unknown CA connector {request.ca!r}")
    if request.ca in found.not_ready:
        raise ParameterError(f"ca: {found.not_ready[request.ca]}")
    template = request.template
    if template and template != DEFAULT_TEMPLATE and (request.ca, template) not in known:
        raise ParameterError(f"template: CA connector {request.ca!r} has no template {template!r}")
    # The route resolved the realm (or took the one given): the user must be in it.
    attributes = found.owners.get((request.username, request.realm))
    if attributes is None:
        raise ParameterError(f"user: unknown user {request.username!r} in realm {request.realm!r}")
    if request.serial in found.taken:
        raise SerialTaken(request.serial)
    if request.ca:
        return _decided(request, found, attributes, csr)
    return request


def _decided(
    request: SignRequest,
    found: _Found,
    attributes: dict[str, str],
    parsed: x509.CertificateSigningRequest | None,
) -> SignRequest:
    """*request* whose CSR (or key type) its template accepts, with the decided subject."""
    named = request.template and request.template != DEFAULT_TEMPLATE
    name = request.template if named else DEFAULT_TEMPLATE
    options = found.known[(request.ca, request.template if named else "")]
    if isinstance(options, _Unusable):
        raise ParameterError(f"template: {name!r} has invalid stored options: {options.reason}")
    enrolled = str(request.info.get("enrolled_by", ""))
    owner = owner_of_job(request.username, request.realm, attributes, enrolled)
    # The ca_worker decides again with the same owner, without reading the user store.
    request = dataclasses.replace(request, owner=attributes)
    if request.keygen is not None:
        violation = keytype_violation(request.keygen.keytype, name, options)
        if violation:
            raise ParameterError(violation)
        components = (*options.subject_components, *request.keygen.subject_components)
        try:
            owner_subject(owner, name, components)
        except Refused as exc:
            raise ParameterError(str(exc)) from None
    if not request.request:  # a key the ca_worker makes, or an uploaded certificate
        return request
    try:
        csr = parsed or parse_csr(request.request)
        size = len(request.request.encode())
        decision = decide(csr, size, name, options, owner, found.ca_types[request.ca])
    except (CSRError, Refused) as exc:
        raise ParameterError(str(exc)) from None
    info = {**request.info, "subject": name_text(decision.subject)}
    if decision.sans:
        info["subject_alt_names"] = decision.san_texts()
    return dataclasses.replace(request, info=info)


def _token_values(request: SignRequest, now: Any) -> dict[str, Any]:
    return {
        "serial": request.serial,
        "tokentype": request.tokentype,
        "username": request.username,
        "realm": request.realm,
        "rollout_state": SUBMITTED,
        "ca": request.ca,
        "template": request.template,
        "request": request.request,
        "certificate": "",
        "info": request.info,
        "created_at": now,
        "updated_at": now,
    }


def check_attestation(
    mode: AttestationMode,
    trust_path: Path | None,
    realm: str,
    csr: x509.CertificateSigningRequest,
    attestation: str | None,
) -> dict[str, Any]:
    """Token info about the attestation of *csr* under *mode*; 400 when it fails.

    Reads files and verifies signatures: run it off the event loop.
    """
    present = bool(attestation and attestation.strip())
    if mode == AttestationMode.IGNORE or (mode == AttestationMode.VERIFY and not present):
        return {"attestation_verified": False}
    if not present:
        raise ParameterError("attestation: missing; this realm requires an attestation certificate")
    assert attestation is not None
    try:
        chain = parse_certificates(attestation)
    except ValueError as exc:
        raise ParameterError(str(exc)) from None
    try:
        trusted = load_trust_store(trust_path)
    except (OSError, ValueError) as exc:
        log.error("attestation CAs unreadable", extra={"realm": realm, "error": str(exc)})
        raise ParameterError(
            "attestation: untrusted chain: the trusted attestation CAs cannot be read"
        ) from None
    try:
        attested = verify_attestation(chain, csr.public_key(), trusted)
    except AttestationError as exc:
        raise ParameterError(str(exc)) from None
    return {
        "attestation_verified": True,
        "attestation_subject": attested.subject,
        "attestation_issuer": attested.issuer,
    }
