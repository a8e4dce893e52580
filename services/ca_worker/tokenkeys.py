"""The sealed keys of genkey tokens: made once per token, completed into a PKCS#12 when issued."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from services.ca_worker.connectors.base import Connector, Denied, Issued, SignResult
from services.ca_worker.keygen import KeygenRefused, KeyPool, subject_attributes
from services.ca_worker.pkcs12 import build_pkcs12
from shared.db.models import Token, TokenKey, User
from shared.db.session import Database
from shared.domain import RolloutState
from shared.jobs import KeySpec, SignRequest
from shared.pki import CSRError, parse_csr
from shared.security import SecretBox

log = logging.getLogger(__name__)

# TokenKey columns once the CA refused: nothing secret is kept for a certificate never issued.
SECRETS_DROPPED: dict[str, Any] = {"private_key": "", "password": ""}


def with_csr(job: SignRequest, csr_pem: str) -> SignRequest:
    """*job* carrying the generated CSR, and its subject in the token info."""
    try:
        subject = parse_csr(csr_pem).subject.rfc4514_string()
    except CSRError:
        subject = ""
    return dataclasses.replace(job, request=csr_pem, info={**job.info, "subject": subject})


class TokenKeys:
    """Makes, stores and completes genkey tokens' keys; every secret sealed at rest."""

    def __init__(self, db: Database, box: SecretBox, pool: KeyPool) -> None:
        self._db = db
        self._box = box
        self._pool = pool

    async def csr_for(self, job: SignRequest) -> SignRequest | Denied | None:
        """The job with the token's CSR, made with its key at most once; None once handled.

        The key and CSR are written in one transaction, only while the token is ``submitted``
        and has no key yet: a redelivered job finds and reuses them.
        """
        spec = job.keygen
        assert spec is not None
        async with self._db.read() as session:
            token = await session.get(Token, job.serial)
            stored = await session.get(TokenKey, job.serial)
            email = ""
            if "email" in spec.subject_components:
                email = (
                    await session.scalar(
                        select(User.email).where(
                            User.username == job.username, User.realm == job.realm
                        )
                    )
                    or ""
                )
        if token is None or token.rollout_state != RolloutState.SUBMITTED:
            return None
        if stored is not None:
            return with_csr(job, token.request)
        try:
            refusal = self._unusable(spec)
            attributes = subject_attributes(job.username, spec.subject_components, email, job.realm)
        except KeygenRefused as exc:
            return Denied(str(exc))
        if refusal:
            return Denied(refusal)
        made = await self._pool.make(spec.keytype, attributes)
        sealed_key = self._box.seal(made.private_key_pem)
        async with self._db.write() as session:
            token = await session.get(Token, job.serial, with_for_update=True)
            if token is None or token.rollout_state != RolloutState.SUBMITTED:
                return None
            if await session.get(TokenKey, job.serial) is not None:
                # Another delivery of this job stored its key first: use that one.
                return with_csr(job, token.request)
            session.add(
                TokenKey(
                    serial=job.serial,
                    keytype=spec.keytype,
                    private_key=sealed_key,
                    password=spec.sealed_password,
                )
            )
            token.request = made.csr_pem
        log.info("key pair generated", extra={"serial": job.serial, "keytype": spec.keytype})
        return with_csr(job, made.csr_pem)

    async def outcome_values(
        self, serial: str, result: SignResult, connector: Connector | None
    ) -> dict[str, Any] | None:
        """TokenKey columns to write with the outcome: the PKCS#12, or the secrets dropped."""
        if isinstance(result, Issued):
            chain = connector.chain() if connector is not None else result.chain
            return await self.completion(serial, result, chain)
        if isinstance(result, Denied):
            return dict(SECRETS_DROPPED)
        return None

    async def completion(
        self, serial: str, issued: Issued, chain: Sequence[str]
    ) -> dict[str, Any] | None:
        """The sealed PKCS#12 of *serial*'s key and certificate; None when there is no key."""
        async with self._db.read() as session:
            stored = await session.get(TokenKey, serial)
        if stored is None or stored.deleted_at is not None:
            return None
        if not stored.private_key or not stored.password:
            log.warning("genkey token lacks its key or password", extra={"serial": serial})
            return None
        der = await self._pool.call(
            build_pkcs12,
            self._box.open(stored.private_key),
            self._box.open(stored.password),
            issued.certificate,
            tuple(pem for pem in chain if pem),
            serial,
        )
        return {"pkcs12": self._box.seal(der), "password": ""}

    def _unusable(self, spec: KeySpec) -> str:
        """Why the job's password cannot protect a PKCS#12, or ""."""
        if not spec.sealed_password:
            return "keygen: the job carries no PKCS#12 password"
        try:
            self._box.open(spec.sealed_password)
        except ValueError:
            return "keygen: the PKCS#12 password does not open with this service's secret key"
        return ""
