"""The sealed keys of genkey tokens: made once per token, completed into a PKCS#12 when issued."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from services.ca_worker.connectors.base import Connector, Denied, Issued, Pending, SignResult
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


@dataclass(frozen=True)
class FreshKey:
    """A key made for this delivery: it is stored with the outcome, or not at all."""

    keytype: str
    key_pem: bytes  # PKCS#8, unencrypted, in memory only
    sealed_password: str


@dataclass(frozen=True)
class KeyWrite:
    """TokenKey columns to write with the outcome: a new row, or an update of the stored one."""

    values: dict[str, Any]
    new: bool


class TokenKeys:
    """Makes, stores and completes genkey tokens' keys; every secret sealed at rest."""

    def __init__(self, db: Database, box: SecretBox, pool: KeyPool) -> None:
        self._db = db
        self._box = box
        self._pool = pool

    async def csr_for(
        self, job: SignRequest
    ) -> tuple[SignRequest, FreshKey | None] | Denied | None:
        """The job with a CSR for a new key (kept in memory); None once the token is handled.

        Nothing is written here: the key commits with the outcome, in the transaction that only
        the first delivery of a job wins. A later or concurrent delivery's key is never stored,
        so a token never has two keys.
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
            # Written by an earlier version, before the outcome: sign that key's CSR.
            return with_csr(job, token.request), None
        try:
            refusal = self._unusable(spec)
            attributes = subject_attributes(job.username, spec.subject_components, email, job.realm)
        except KeygenRefused as exc:
            return Denied(str(exc))
        if refusal:
            return Denied(refusal)
        made = await self._pool.make(spec.keytype, attributes)
        log.info("key pair generated", extra={"serial": job.serial, "keytype": spec.keytype})
        fresh = FreshKey(spec.keytype, made.private_key_pem, spec.sealed_password)
        return with_csr(job, made.csr_pem), fresh

    async def outcome_values(
        self,
        serial: str,
        result: SignResult,
        connector: Connector | None,
        fresh: FreshKey | None,
    ) -> KeyWrite | None:
        """What to write of the token's key with the outcome: PKCS#12, pending key, or nothing."""
        chain: Sequence[str] = ()
        if isinstance(result, Issued):
            chain = connector.chain() if connector is not None else result.chain
        if fresh is None:
            if isinstance(result, Issued):
                values = await self.completion(serial, result, chain)
                return None if values is None else KeyWrite(values, new=False)
            if isinstance(result, Denied):
                return KeyWrite(dict(SECRETS_DROPPED), new=False)
            return None
        row: dict[str, Any] = {"serial": serial, "keytype": fresh.keytype, **SECRETS_DROPPED}
        row["pkcs12"] = ""
        if isinstance(result, Issued):
            password = self._box.open(fresh.sealed_password)
            row["pkcs12"] = await self._seal_pkcs12(fresh.key_pem, password, result, chain, serial)
        elif isinstance(result, Pending):
            # Kept sealed until the CA manager decides; the PKCS#12 is built then.
            row["private_key"] = self._box.seal(fresh.key_pem)
            row["password"] = fresh.sealed_password
        return KeyWrite(row, new=True)

    async def _seal_pkcs12(
        self, key_pem: bytes, password: bytes, issued: Issued, chain: Sequence[str], serial: str
    ) -> str:
        der = await self._pool.call(
            build_pkcs12,
            key_pem,
            password,
            issued.certificate,
            tuple(pem for pem in chain if pem),
            serial,
        )
        return self._box.seal(der)

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
        key_pem, password = self._box.open(stored.private_key), self._box.open(stored.password)
        pkcs12 = await self._seal_pkcs12(key_pem, password, issued, chain, serial)
        # The PKCS#12 holds the key: neither it nor the password is kept apart any longer.
        return {"pkcs12": pkcs12, **SECRETS_DROPPED}

    def _unusable(self, spec: KeySpec) -> str:
        """Why the job's password cannot protect a PKCS#12, or ""."""
        if not spec.sealed_password:
            return "keygen: the job carries no PKCS#12 password"
        try:
            self._box.open(spec.sealed_password)
        except ValueError:
            return "keygen: the PKCS#12 password does not open with this service's secret key"
        return ""
