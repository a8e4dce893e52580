"""The sealed keys of genkey tokens: made once per token, completed into a PKCS#12 when issued."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.ca_worker.connectors.base import Denied, Issued, Pending, SignResult
from services.ca_worker.keygen import KeygenRefused, KeyPool
from services.ca_worker.pkcs12 import build_pkcs12
from shared.db.models import TokenKey
from shared.db.session import Database
from shared.identity import Owner, Refused, owner_subject
from shared.jobs import KeySpec, SignRequest
from shared.security import SecretBox

log = logging.getLogger(__name__)

# TokenKey columns once the CA refused: nothing secret is kept for a certificate never issued.
SECRETS_DROPPED: dict[str, Any] = {"private_key": "", "password": ""}


@dataclass(frozen=True)
class FreshKey:
    """A key made for this delivery: it is stored with the outcome, or not at all."""

    key_pem: bytes  # PKCS#8, unencrypted, in memory only
    password: bytes  # the PKCS#12 password, opened from the job
    sealed_password: str


class TokenKeys:
    """Makes, stores and completes genkey tokens' keys; every secret sealed at rest."""

    def __init__(self, db: Database, box: SecretBox, pool: KeyPool) -> None:
        self._db = db
        self._box = box
        self._pool = pool

    async def csr_for(
        self, job: SignRequest, owner: Owner
    ) -> tuple[SignRequest, FreshKey] | Denied:
        """The job with a CSR for a new key (kept in memory), for a token awaiting its outcome.

        Nothing is written here: the key commits with the outcome, in the transaction that only
        the first delivery of a job wins. A later or concurrent delivery's key is never stored,
        so a token never has two keys.
        """
        spec = job.keygen
        assert spec is not None
        try:
            password = self._password(spec)
            # The CA decides the certificate's names again; the CSR carries the same ones.
            subject = owner_subject(owner, job.template, spec.subject_components)
        except (KeygenRefused, Refused) as exc:
            return Denied(str(exc))
        attributes = tuple((a.oid.dotted_string, str(a.value)) for a in subject)
        made = await self._pool.make(spec.keytype, attributes)
        log.info("key pair generated", extra={"serial": job.serial, "keytype": spec.keytype})
        info = {**job.info, "subject": made.subject}
        signing = dataclasses.replace(job, request=made.csr_pem, info=info)
        return signing, FreshKey(made.private_key_pem, password, spec.sealed_password)

    async def key_row(
        self, job: SignRequest, result: SignResult, chain: Sequence[str], fresh: FreshKey
    ) -> dict[str, Any]:
        """The TokenKey row to store with the outcome: PKCS#12, pending key, or no secret."""
        assert job.keygen is not None
        row: dict[str, Any] = {"serial": job.serial, "keytype": job.keygen.keytype, "pkcs12": ""}
        row.update(SECRETS_DROPPED)
        if isinstance(result, Issued):
            row["pkcs12"] = await self._seal_pkcs12(
                fresh.key_pem, fresh.password, result, chain, job.serial
            )
        elif isinstance(result, Pending):
            # Kept sealed until the CA manager decides; the PKCS#12 is built then.
            row["private_key"] = self._box.seal(fresh.key_pem)
            row["password"] = fresh.sealed_password
        return row

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

    def _password(self, spec: KeySpec) -> bytes:
        """The job's PKCS#12 password; KeygenRefused when it cannot protect one."""
        if not spec.sealed_password:
            raise KeygenRefused("keygen: the job carries no PKCS#12 password")
        try:
            return self._box.open(spec.sealed_password)
        except ValueError:
            raise KeygenRefused(
                "keygen: the PKCS#12 password does not open with this service's secret key"
            ) from None
