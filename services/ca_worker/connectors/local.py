"""The ``local`` connector: a CA whose encrypted key lives in the ca_worker's data directory."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    NameOID,
    ObjectIdentifier,
)

from services.ca_worker.connectors.base import (
    Connector,
    Denied,
    Issued,
    PermanentCAError,
    SignResult,
    Template,
)
from services.ca_worker.keystores import CAKey, close_ca_key, load_ca_key
from services.ca_worker.keystores.file import option_path, read_file
from shared.ca_material import chain_pems, generation_of, not_ready_reason, public_urls
from shared.identity import Decision, Owner, Refused, decide
from shared.pki import (
    CSRError,
    cert_pem,
    key_info,
    load_certificate,
    name_text,
    parse_csr,
    serial_hex,
    signature_hash,
)

CLOCK_SKEW = timedelta(minutes=5)

_KEY_USAGES = {
    "digitalSignature": "digital_signature",
    "nonRepudiation": "content_commitment",
    "contentCommitment": "content_commitment",
    "keyEncipherment": "key_encipherment",
    "dataEncipherment": "data_encipherment",
    "keyAgreement": "key_agreement",
    "encipherOnly": "encipher_only",
    "decipherOnly": "decipher_only",
}
# RFC 5480 and RFC 8410: EC keys cannot encipher, EdDSA keys can only sign.
_USAGES_BY_KEY_TYPE = {
    "ec": frozenset(_KEY_USAGES) - {"keyEncipherment", "dataEncipherment"},
    "ed25519": frozenset({"digitalSignature", "nonRepudiation", "contentCommitment"}),
    "ed448": frozenset({"digitalSignature", "nonRepudiation", "contentCommitment"}),
}
_EXTENDED_KEY_USAGES = {
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "codeSigning": ExtendedKeyUsageOID.CODE_SIGNING,
    "timeStamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "smartcardLogon": ExtendedKeyUsageOID.SMARTCARD_LOGON,
}
# anyExtendedKeyUsage would let a user certificate act as a server certificate, too.
_FORBIDDEN_EKUS = frozenset(
    {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
)


class LocalConnector(Connector):
    """Signs through its key store (an encrypted file decrypted once at load, or a token)."""

    type: ClassVar[str] = "local"

    def __init__(
        self,
        name: str,
        key: CAKey,
        cert: x509.Certificate,
        *,
        chain: tuple[str, ...] = (),
        public_url: str = "",
        generation: int = 1,
    ) -> None:
        self.name = name
        self.generation = generation
        self._key = key
        self._cert = cert
        self._cert_pem = cert_pem(cert)
        self._chain = (self._cert_pem, *chain)
        self._hash = signature_hash(key.public_key())
        self._aki = _authority_key_identifier(cert, key)
        self._where = _where_to_check(public_url, name, generation)

    @classmethod
    def load(
        cls,
        name: str,
        options: Mapping[str, Any],
        data_dir: Path,
        passphrase: bytes,
        public_url: str = "",
    ) -> LocalConnector:
        """Read and decrypt the CA named *name* as configured by *options*."""
        reason = not_ready_reason(name, options)
        if reason is not None:
            raise PermanentCAError(f"ca: {reason}")
        cert_path = option_path(name, options, "cacert", data_dir)
        key = load_ca_key(name, options, data_dir, passphrase)
        try:
            cert = load_certificate(read_file(name, cert_path))
        except ValueError as exc:
            raise PermanentCAError(f"CA connector {name!r}: {cert_path}: {exc}") from None
        if not isinstance(key.public_key(), rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise PermanentCAError(f"CA connector {name!r}: the CA key must be RSA or EC")
        if cert.public_key() != key.public_key():
            raise PermanentCAError(f"CA connector {name!r}: the CA key does not match cacert")
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise PermanentCAError(f"CA connector {name!r}: cacert is not a CA certificate")
        return cls(
            name,
            key,
            cert,
            chain=chain_pems(options),
            public_url=public_url,
            generation=generation_of(options),
        )

    async def sign(self, csr_pem: str, template: Template, owner: Owner) -> SignResult:
        """Certify *csr_pem*; in a thread unless the key signs faster than a thread hop."""
        if self._key.signs_quickly:
            return self._sign(csr_pem, template, owner)
        return await asyncio.to_thread(self._sign, csr_pem, template, owner)

    async def close(self) -> None:
        """Release what the key holds open (a token's session)."""
        await asyncio.to_thread(close_ca_key, self._key)

    async def revoke(self, serial_number: str, reason: str) -> None:
        """Nothing to ask: a local CA's revocations are its database rows and its CRL."""

    def ca_certificate(self) -> str:
        """The CA certificate, PEM."""
        return self._cert_pem

    def chain(self) -> tuple[str, ...]:
        """The CA certificate and those above it up to the root, PEM, issuer first."""
        return self._chain

    @property
    def certificate(self) -> x509.Certificate:
        """The CA certificate."""
        return self._cert

    def sign_crl(self, builder: x509.CertificateRevocationListBuilder) -> bytes:
        """Sign a CRL the caller built (issuer and AKI are set here); DER."""
        crl = builder.issuer_name(self._cert.subject).add_extension(self._aki, critical=False)
        return self._key.sign_crl(crl, self._hash).public_bytes(serialization.Encoding.DER)

    def issue_responder(
        self, key: ec.EllipticCurvePublicKey, not_before: datetime, not_after: datetime
    ) -> x509.Certificate:
        """A delegated OCSP signing certificate (RFC 6960 4.2.2.2) for *key*."""
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name} OCSP responder")]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._cert.subject)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(max(not_before, self._cert.not_valid_before_utc))
            .not_valid_after(min(not_after, self._cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
            )
            .add_extension(x509.OCSPNoCheck(), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
            .add_extension(self._aki, critical=False)
        )
        return self._key.sign_certificate(builder, self._hash)

    def _sign(self, csr_pem: str, template: Template, owner: Owner) -> SignResult:
        """Validate the template and the request, then issue."""
        _check_key_usage(template)
        extended_key_usage = _extended_key_usage(template)
        if template.validity_days <= 0:
            raise PermanentCAError(f"template {template.name!r}: validity_days must be positive")
        try:
            csr = parse_csr(csr_pem)
            decision = decide(csr, len(csr_pem.encode()), template.name, template, owner)
            public_key = csr.public_key()  # each call decodes the key again
            key_usage = _key_usage(template, public_key)
        except (CSRError, Refused) as exc:
            return Denied(str(exc))
        return self._issue(public_key, decision, template, key_usage, extended_key_usage)

    def _issue(
        self,
        public_key: CertificatePublicKeyTypes,
        decision: Decision,
        template: Template,
        key_usage: x509.KeyUsage | None,
        extended_key_usage: x509.ExtendedKeyUsage | None,
    ) -> Issued:
        """Build and sign the certificate certtoken decided on."""
        not_before, not_after = self._validity(template.validity_days)
        builder = (
            x509.CertificateBuilder()
            .subject_name(decision.subject)
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self._aki, critical=False)
        )
        if key_usage is not None:
            builder = builder.add_extension(key_usage, critical=True)
        if extended_key_usage is not None:
            builder = builder.add_extension(extended_key_usage, critical=False)
        san = decision.san_extension
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        for extension in self._where:
            builder = builder.add_extension(extension, critical=False)
        cert = self._key.sign_certificate(builder, self._hash)
        return Issued(
            certificate=cert_pem(cert),
            serial_number=serial_hex(cert.serial_number),
            subject=name_text(cert.subject),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            chain=self._chain,
        )

    def _validity(self, days: int) -> tuple[datetime, datetime]:
        """Not-before (back-dated for clock skew) and not-after, both inside the CA's validity."""
        now = datetime.now(UTC).replace(microsecond=0)
        ca_not_after = self._cert.not_valid_after_utc
        if ca_not_after <= now:
            raise PermanentCAError(
                f"CA connector {self.name!r}: the CA certificate expired on {ca_not_after:%Y-%m-%d}"
            )
        not_before = max(now - CLOCK_SKEW, self._cert.not_valid_before_utc)
        not_after = min(now + timedelta(days=days), ca_not_after)
        return not_before, not_after


def _where_to_check(public_url: str, name: str, generation: int) -> tuple[x509.ExtensionType, ...]:
    """The CRL distribution point and AIA (OCSP, CA issuers) under *public_url*, if set."""
    urls = public_urls(public_url, name, generation)
    if urls is None:
        return ()
    crl = x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(urls["crl"])],
        relative_name=None,
        reasons=None,
        crl_issuer=None,
    )
    aia = x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(urls["ocsp"])
            ),
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(urls["ca_issuers"]),
            ),
        ]
    )
    return (x509.CRLDistributionPoints([crl]), aia)


def _authority_key_identifier(cert: x509.Certificate, key: CAKey) -> x509.AuthorityKeyIdentifier:
    """The AKI of certificates this CA issues: the CA's own SKI."""
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        public_key = key.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise PermanentCAError("the CA key must be RSA or EC") from None
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _check_key_usage(template: Template) -> None:
    """Refuse a template whose key usages a user certificate cannot have."""
    unknown = [u for u in template.key_usage if u not in _KEY_USAGES]
    if {"keyCertSign", "cRLSign"} & set(unknown):
        raise PermanentCAError(
            f"template {template.name!r}: keyCertSign and cRLSign are for CA certificates"
        )
    if unknown:
        raise PermanentCAError(
            f"template {template.name!r}: unknown key usage {', '.join(unknown)}; "
            f"known: {', '.join(_KEY_USAGES)}"
        )
    usages = set(template.key_usage)
    if usages & {"encipherOnly", "decipherOnly"} and "keyAgreement" not in usages:
        raise PermanentCAError(
            f"template {template.name!r}: encipherOnly and decipherOnly need keyAgreement"
        )


def _key_usage(template: Template, key: CertificatePublicKeyTypes) -> x509.KeyUsage | None:
    """The template's key usages that fit *key*; None when the template lists none."""
    if not template.key_usage:
        return None
    key_type = key_info(key)[0]
    fitting = _USAGES_BY_KEY_TYPE.get(key_type, frozenset(_KEY_USAGES))
    flags = dict.fromkeys(_KEY_USAGES.values(), False)
    for usage in template.key_usage:
        if usage in fitting:
            flags[_KEY_USAGES[usage]] = True
    if not any(flags.values()):
        raise Refused(
            f"request: an {key_type.upper()} key cannot serve the key usages of template "
            f"{template.name!r} ({', '.join(template.key_usage)})"
        )
    return x509.KeyUsage(
        digital_signature=flags["digital_signature"],
        content_commitment=flags["content_commitment"],
        key_encipherment=flags["key_encipherment"],
        data_encipherment=flags["data_encipherment"],
        key_agreement=flags["key_agreement"],
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=flags["encipher_only"],
        decipher_only=flags["decipher_only"],
    )


def _extended_key_usage(template: Template) -> x509.ExtendedKeyUsage | None:
    """The template's extended key usages; a user certificate never gets serverAuth."""
    oids: list[ObjectIdentifier] = []
    for usage in template.extended_key_usage:
        oid = _EXTENDED_KEY_USAGES.get(usage)
        if oid is None:
            try:
                oid = ObjectIdentifier(usage)
            except ValueError:
                oid = None
        if oid in _FORBIDDEN_EKUS or usage in ("serverAuth", "anyExtendedKeyUsage"):
            raise PermanentCAError(
                f"template {template.name!r}: {usage} is not allowed in a user certificate"
            )
        if oid is None:
            raise PermanentCAError(
                f"template {template.name!r}: unknown extended key usage {usage!r}; "
                f"known: {', '.join(_EXTENDED_KEY_USAGES)} or a dotted OID"
            )
        if oid not in oids:
            oids.append(oid)
    return x509.ExtendedKeyUsage(oids) if oids else None
