"""OCSP answers (RFC 6960) signed by a local CA's delegated responder, never by the CA key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from sqlalchemy import select

from shared.ca_keyids import subject_key_id
from shared.ca_material import chain_pems, generation_of
from shared.db.models import CAConnector, CAGeneration, CAPublication, IssuedCertificate, utcnow
from shared.db.session import Database
from shared.pki import serial_hex
from shared.security import SecretBox

NEXT_UPDATE = timedelta(hours=1)


@dataclass(frozen=True)
class _Signer:
    """A responder certificate with its opened key, and the CA it answers for."""

    pem: str
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    issuer: x509.Certificate
    # The CA's certificate and the intermediates above it, when it is not a root itself:
    # a client that trusts only the organisation's root can verify the responder.
    chain: tuple[x509.Certificate, ...] = ()
    # The key identifier of the CA generation it answers for (its certificates' AKI).
    key_id: str = ""


@dataclass(frozen=True)
class CertStatus:
    """What the database says of one serial number."""

    status: ocsp.OCSPCertStatus
    revoked_at: datetime | None = None
    reason: x509.ReasonFlags | None = None


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    """An unsigned OCSP error answer (malformed request, unauthorized, internal error)."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )


def issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> tuple[bytes, bytes]:
    """The CertID hashes of *issuer*: of its subject DER and of its public key's bits."""
    name = hashes.Hash(algorithm)
    name.update(issuer.subject.public_bytes())
    key = issuer.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        bits = key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    elif isinstance(key, rsa.RSAPublicKey):
        bits = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    else:
        raise ValueError("unsupported CA key type")
    key_hash = hashes.Hash(algorithm)
    key_hash.update(bits)
    return name.finalize(), key_hash.finalize()


def build_response(
    request: ocsp.OCSPRequest, signer: _Signer, status: CertStatus, now: datetime
) -> bytes:
    """A signed response for *request*, echoing its nonce."""
    this_update = now.replace(microsecond=0)
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial_number=request.serial_number,
            algorithm=request.hash_algorithm,
            cert_status=status.status,
            this_update=this_update,
            next_update=this_update + NEXT_UPDATE,
            revocation_time=status.revoked_at,
            revocation_reason=status.reason,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, signer.cert)
        .certificates([signer.cert, *signer.chain])
    )
    try:
        nonce = request.extensions.get_extension_for_class(x509.OCSPNonce)
        builder = builder.add_extension(nonce.value, critical=False)
    except x509.ExtensionNotFound:
        pass
    response = builder.sign(signer.key, hashes.SHA256())
    return response.public_bytes(serialization.Encoding.DER)


def _reason(name: str | None) -> x509.ReasonFlags | None:
    for flag in x509.ReasonFlags:
        if flag.value == name and flag is not x509.ReasonFlags.unspecified:
            return flag
    return None


class OCSPResponder:
    """Answers for every local CA from the database; keys opened once per responder cert."""

    def __init__(self, db: Database, box: SecretBox) -> None:
        self._db = db
        self._box = box
        self._signers: dict[tuple[str, int], _Signer] = {}

    async def respond(self, ca: str, der: bytes) -> bytes:
        """The DER OCSP response to the DER request *der* about a certificate of *ca*."""
        try:
            request = ocsp.load_der_ocsp_request(der)
            algorithm = request.hash_algorithm
        except Exception:
            return unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        async with self._db.read() as session:
            publication = await session.get(CAPublication, ca)
            connector = await session.get(CAConnector, ca)
            issued = await session.scalar(
                select(IssuedCertificate).where(
                    IssuedCertificate.ca == ca,
                    IssuedCertificate.serial_number == serial_hex(request.serial_number),
                )
            )
            earlier = (
                await session.scalars(
                    select(CAGeneration).where(
                        CAGeneration.ca == ca,
                        CAGeneration.retired_at.is_(None),
                        CAGeneration.ocsp_cert != "",
                    )
                )
            ).all()
        if publication is None or connector is None or not connector.cacert:
            return unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        asked = (request.issuer_name_hash, request.issuer_key_hash)
        signer = self._current(ca, publication, connector)
        if signer is None or issuer_hashes(signer.issuer, algorithm) != asked:
            # An earlier generation's certificate: that generation's responder answers.
            found = next(
                (
                    self._earlier(row)
                    for row in earlier
                    if issuer_hashes(x509.load_pem_x509_certificate(row.cacert.encode()), algorithm)
                    == asked
                ),
                None,
            )
            if found is not None:
                signer = found
            elif signer is None:
                # Rolled over a moment ago: the new key's responder is being made.
                return unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)
            else:
                # Not a certificate of this CA: RFC 6960 2.2 "unknown" fits an unknown issuer.
                issued = None
        if issued is not None and issued.issuer_key_id not in (None, signer.key_id):
            issued = None  # that serial is another generation's
        status = CertStatus(ocsp.OCSPCertStatus.UNKNOWN)
        if issued is not None and issued.revoked_at is not None:
            status = CertStatus(
                ocsp.OCSPCertStatus.REVOKED,
                issued.revoked_at.replace(microsecond=0),
                _reason(issued.revocation_reason),
            )
        elif issued is not None:
            status = CertStatus(ocsp.OCSPCertStatus.GOOD)
        return build_response(request, signer, status, utcnow())

    def _current(
        self, ca: str, publication: CAPublication, connector: CAConnector
    ) -> _Signer | None:
        """The current generation's signer; None while its responder is still the previous."""
        generation = generation_of(connector.options)
        if publication.generation != generation:
            return None
        return self._signer(
            (ca, generation),
            publication.ocsp_cert,
            publication.ocsp_key,
            connector.cacert,
            connector.options,
        )

    def _earlier(self, row: CAGeneration) -> _Signer:
        """The signer of an earlier generation that still answers for its certificates."""
        return self._signer(
            (row.ca, row.generation), row.ocsp_cert, row.ocsp_key, row.cacert, row.options
        )

    def _signer(
        self,
        which: tuple[str, int],
        ocsp_cert: str,
        ocsp_key: str,
        cacert: str,
        options: dict[str, Any],
    ) -> _Signer:
        cached = self._signers.get(which)
        if cached is not None and cached.pem == ocsp_cert:
            return cached
        key = serialization.load_pem_private_key(self._box.open(ocsp_key), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("OCSP responder key must be EC")
        issuer = x509.load_pem_x509_certificate(cacert.encode())
        above = [x509.load_pem_x509_certificate(pem.encode()) for pem in chain_pems(options)]
        intermediates = tuple(c for c in above if c.issuer != c.subject)
        signer = _Signer(
            pem=ocsp_cert,
            cert=x509.load_pem_x509_certificate(ocsp_cert.encode()),
            key=key,
            issuer=issuer,
            key_id=subject_key_id(issuer),
            chain=(issuer, *intermediates) if above else (),
        )
        self._signers[which] = signer
        return signer
