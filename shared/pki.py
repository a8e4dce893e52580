"""PKI helpers shared by the api and the ca_worker: parsing, summaries, names, keys."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import TypedDict

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID, ObjectIdentifier

MAX_PEM_BYTES = 64 * 1024
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256

KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096")

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_NOT_A_CSR = "not a PEM-encoded PKCS#10 certificate signing request"


class CSRError(ValueError):
    """A certificate signing request that cannot be used; str() names the field."""

    def __init__(self, message: str, field: str = "request") -> None:
        super().__init__(f"{field}: {message}")


class CSRSummary(TypedDict):
    """What a CSR asks for, in plain values."""

    subject: str
    sans: list[str]
    key_type: str
    key_size: int | None
    curve: str | None
    signature_hash: str | None


def parse_csr(pem: str | bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM (or bare base64 DER) CSR and check its self-signature."""
    raw = pem.encode("utf-8", "replace") if isinstance(pem, str) else pem
    if len(raw) > MAX_PEM_BYTES:
        raise CSRError(f"larger than {MAX_PEM_BYTES // 1024} KiB")
    raw = raw.strip()
    if not raw:
        raise CSRError("empty")
    try:
        if raw.startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(raw)
        else:
            # privacyIDEA clients sometimes send the base64 body without BEGIN/END lines.
            der = base64.b64decode(b"".join(raw.split()), validate=True)
            csr = x509.load_der_x509_csr(der)
    except (ValueError, binascii.Error):
        raise CSRError(_NOT_A_CSR) from None
    except x509.InvalidVersion:
        raise CSRError("the CSR has an unknown version; PKCS#10 knows only v1") from None
    try:
        csr.public_key()
        valid = csr.is_signature_valid
    except UnsupportedAlgorithm:
        raise CSRError("the CSR uses an unsupported key or signature algorithm") from None
    except ValueError:
        raise CSRError(_NOT_A_CSR) from None
    refused = _refused_hash(csr)
    if refused:
        raise CSRError(
            f"the CSR is signed with {refused}, which is never accepted (signature_hashes); "
            "sign it with sha256 or stronger"
        )
    if not valid:
        raise CSRError("the CSR signature does not verify")
    try:
        # Names are parsed lazily: read now, a malformed one is a CSRError and not a 500 later.
        csr.subject.rfc4514_string()
    except ValueError:
        raise CSRError("the CSR has a malformed subject") from None
    try:
        csr.extensions  # noqa: B018 - parsing now turns a malformed extension into CSRError
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType):
        raise CSRError("the CSR has malformed extensions") from None
    return csr


def _refused_hash(csr: x509.CertificateSigningRequest) -> str | None:
    """The name of the CSR's signature hash when it is one no template may allow."""
    try:
        algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return None
    if isinstance(algorithm, hashes.SHA1 | hashes.MD5):
        return algorithm.name
    return None


# RFC 4514 has no short name for emailAddress; OpenSSL's is what people read and write.
_NAME_OVERRIDES = {NameOID.EMAIL_ADDRESS: "emailAddress"}


def name_text(name: x509.Name) -> str:
    """*name* as RFC 4514 text, emailAddress by its name rather than its OID."""
    return name.rfc4514_string(_NAME_OVERRIDES)


def csr_summary(csr: x509.CertificateSigningRequest) -> CSRSummary:
    """Subject, SANs, key and signature hash of *csr*."""
    key_type, key_size, curve = key_info(csr.public_key())
    try:
        hash_alg = csr.signature_hash_algorithm
    except UnsupportedAlgorithm:
        hash_alg = None
    return {
        "subject": name_text(csr.subject),
        "sans": csr_sans(csr),
        "key_type": key_type,
        "key_size": key_size,
        "curve": curve,
        "signature_hash": hash_alg.name if hash_alg is not None else None,
    }


def csr_sans(csr: x509.CertificateSigningRequest) -> list[str]:
    """The subject alternative names of *csr*, OpenSSL style ("DNS:x", "email:y")."""
    try:
        ext = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [general_name_text(name) for name in ext.value]


def general_name_text(name: x509.GeneralName) -> str:
    """One general name as text, OpenSSL style."""
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    if isinstance(name, x509.DirectoryName):
        return f"DirName:{name.value.rfc4514_string()}"
    if isinstance(name, x509.RegisteredID):
        return f"RID:{name.value.dotted_string}"
    if isinstance(name, x509.OtherName):
        return f"othername:{name.type_id.dotted_string}"
    return f"unknown:{name!r}"


def key_info(key: CertificatePublicKeyTypes) -> tuple[str, int | None, str | None]:
    """Key type name, size in bits (curve size for EC) and curve name of a public key."""
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec", key.curve.key_size, key.curve.name
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256, None
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 456, None
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa", key.key_size, None
    return type(key).__name__.lower(), None, None


def weak_key_reason(key: CertificatePublicKeyTypes) -> str | None:
    """Why a CA must refuse to certify *key*, or None when it is strong enough."""
    key_type, size, curve = key_info(key)
    if key_type == "rsa" and (size or 0) < MIN_RSA_BITS:
        return f"RSA key of {size} bits is too weak; at least {MIN_RSA_BITS} bits are required"
    if key_type == "ec" and (size or 0) < MIN_EC_BITS:
        return f"EC curve {curve} is too weak; P-256 or stronger is required"
    if key_type not in ("rsa", "ec", "ed25519", "ed448"):
        return f"{key_type} keys are not accepted; use RSA, EC or EdDSA"
    return None


# Attribute names accepted in subjects, lower case; dotted OIDs are accepted too.
_ATTRIBUTES: dict[str, ObjectIdentifier] = {
    "cn": NameOID.COMMON_NAME,
    "commonname": NameOID.COMMON_NAME,
    "c": NameOID.COUNTRY_NAME,
    "countryname": NameOID.COUNTRY_NAME,
    "l": NameOID.LOCALITY_NAME,
    "localityname": NameOID.LOCALITY_NAME,
    "st": NameOID.STATE_OR_PROVINCE_NAME,
    "stateorprovincename": NameOID.STATE_OR_PROVINCE_NAME,
    "o": NameOID.ORGANIZATION_NAME,
    "organizationname": NameOID.ORGANIZATION_NAME,
    "ou": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "organizationalunitname": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "street": NameOID.STREET_ADDRESS,
    "streetaddress": NameOID.STREET_ADDRESS,
    "dc": NameOID.DOMAIN_COMPONENT,
    "domaincomponent": NameOID.DOMAIN_COMPONENT,
    "uid": NameOID.USER_ID,
    "userid": NameOID.USER_ID,
    "emailaddress": NameOID.EMAIL_ADDRESS,
    "email": NameOID.EMAIL_ADDRESS,
    "e": NameOID.EMAIL_ADDRESS,
    "serialnumber": NameOID.SERIAL_NUMBER,
    "sn": NameOID.SURNAME,
    "surname": NameOID.SURNAME,
    "gn": NameOID.GIVEN_NAME,
    "givenname": NameOID.GIVEN_NAME,
    "title": NameOID.TITLE,
    "initials": NameOID.INITIALS,
    "pseudonym": NameOID.PSEUDONYM,
    "generationqualifier": NameOID.GENERATION_QUALIFIER,
    "dnqualifier": NameOID.DN_QUALIFIER,
    "postalcode": NameOID.POSTAL_CODE,
    "businesscategory": NameOID.BUSINESS_CATEGORY,
    "organizationidentifier": NameOID.ORGANIZATION_IDENTIFIER,
}
_DOTTED_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
_ASCII_ONLY = frozenset({NameOID.EMAIL_ADDRESS, NameOID.DOMAIN_COMPONENT})


def parse_subject(text: str) -> x509.Name:
    """Parse "/CN=foo/O=Bar/C=DE" (OpenSSL) or "CN=foo,O=Bar,C=DE" (RFC 4514)."""
    text = text.strip()
    if not text:
        raise ValueError("subject: empty")
    if text.startswith("/"):
        rdn_texts = _split_unescaped(text[1:], "/")
        hex_escapes = False
    else:
        # RFC 4514 lists the most specific RDN first; x509.Name wants it last.
        rdn_texts = _split_unescaped(text, ",")[::-1]
        hex_escapes = True
    rdns = [
        x509.RelativeDistinguishedName(
            [_attribute(part, hex_escapes) for part in _split_unescaped(rdn, "+")]
        )
        for rdn in rdn_texts
    ]
    return x509.Name(rdns)


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split *text* on *sep* where it is not escaped with a backslash."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for ch in chars:
        if ch == "\\":
            current.append(ch + next(chars, ""))
        elif ch == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _attribute(text: str, hex_escapes: bool) -> x509.NameAttribute[str]:
    """One ``TYPE=value`` pair as a name attribute."""
    name, eq, raw_value = text.partition("=")
    name = name.strip()
    if not eq or not name:
        raise ValueError(f"subject: {text.strip()!r} is not of the form TYPE=value")
    oid = _ATTRIBUTES.get(name.lower())
    if oid is None and _DOTTED_OID.match(name):
        oid = ObjectIdentifier(name)
    if oid is None:
        raise ValueError(
            f"subject: unknown attribute {name!r}; use e.g. CN, O, OU, C, ST, L, emailAddress, "
            "UID, DC or a dotted OID"
        )
    if hex_escapes and raw_value.lstrip().startswith("#"):
        raise ValueError(f"subject: {name}: hex-encoded (#...) values are not supported")
    value = _unescape(_strip_unescaped(raw_value), hex_escapes)
    if not value:
        raise ValueError(f"subject: {name} has an empty value")
    if oid in _ASCII_ONLY and not value.isascii():
        raise ValueError(f"subject: {name} must be ASCII")
    try:
        return x509.NameAttribute(oid, value)
    except ValueError as exc:
        raise ValueError(f"subject: {name}: {exc}") from None


def _strip_unescaped(raw: str) -> str:
    """Strip surrounding whitespace, keeping a trailing space escaped as ``\\ ``."""
    stripped = raw.strip()
    trailing_backslashes = len(stripped) - len(stripped.rstrip("\\"))
    if trailing_backslashes % 2 and len(raw.rstrip()) < len(raw):
        return raw.lstrip()[: len(stripped) + 1]
    return stripped


def _unescape(raw: str, hex_escapes: bool) -> str:
    """Resolve backslash escapes; RFC 4514 also allows ``\\XX`` hex pairs (UTF-8 octets)."""
    out = bytearray()
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch != "\\":
            out += ch.encode()
            i += 1
            continue
        pair = raw[i + 1 : i + 3]
        if hex_escapes and len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
            out.append(int(pair, 16))
            i += 3
        elif i + 1 < len(raw):
            out += raw[i + 1].encode()
            i += 2
        else:
            raise ValueError("subject: a value ends with a lone backslash")
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise ValueError("subject: hex escapes do not form valid UTF-8") from None


def generate_private_key(key_type: str) -> PrivateKey:
    """A new private key of one of :data:`KEY_TYPES`."""
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type in ("rsa-2048", "rsa-3072", "rsa-4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise ValueError(f"key_type: unknown {key_type!r}; choose one of {', '.join(KEY_TYPES)}")


def signature_hash(
    public_key: CertificatePublicKeyTypes,
) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """The hash a key signs with: as strong as the key (SHA-384 for P-384)."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.key_size > 384:
            return hashes.SHA512()
        if public_key.curve.key_size > 256:
            return hashes.SHA384()
    return hashes.SHA256()


def signature_hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """:func:`signature_hash` of a private key."""
    return signature_hash(key.public_key())


def cert_pem(cert: x509.Certificate) -> str:
    """*cert* as PEM text."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_certificate(pem: str | bytes) -> x509.Certificate:
    """Parse one PEM certificate; ValueError with a clear message otherwise."""
    raw = pem.encode("utf-8", "replace") if isinstance(pem, str) else pem
    if len(raw) > MAX_PEM_BYTES:
        raise ValueError(f"certificate: larger than {MAX_PEM_BYTES // 1024} KiB")
    try:
        return x509.load_pem_x509_certificate(raw.strip())
    except (ValueError, x509.InvalidVersion):
        raise ValueError("certificate: not a PEM-encoded X.509 certificate") from None


def serial_hex(serial: int) -> str:
    """A certificate serial number as lowercase hex."""
    return format(serial, "x")


def certificate_id(cert: x509.Certificate) -> str:
    """Who issued *cert* and its serial, as one key: ``<sha256 of the issuer DER>:<serial hex>``."""
    issuer = hashlib.sha256(cert.issuer.public_bytes()).hexdigest()
    return f"{issuer}:{serial_hex(cert.serial_number)}"
