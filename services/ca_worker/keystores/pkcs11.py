"""The pkcs11 key store: a CA key inside a PKCS#11 token (an HSM) that signs there and never leaves.

cryptography's builders sign only with software keys, so each object is built and signed with a
throwaway key of the same family (its TBS then carries the right signature algorithm), and the
TBS bytes are signed again in the token; the signed object is reassembled around the token's
signature and verified with the token's public key before it is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pkcs11
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.types import SignMixin
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from services.ca_worker.connectors.base import PermanentCAError, TemporaryCAError
from services.ca_worker.keystores import der
from services.ca_worker.keystores.pkcs11_uri import (
    Pkcs11Uri,
    Pkcs11UriError,
    parse_pkcs11_uri,
    pin_source_path,
)

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Pkcs11Lib

log = logging.getLogger(__name__)

MODULE_SETTING = "CERTTOKEN_PKCS11_MODULE"
MIN_RSA_BITS = 2048
_CURVES: dict[str, tuple[type[ec.EllipticCurve], str]] = {
    "ec-p256": (ec.SECP256R1, "1.2.840.10045.3.1.7"),
    "ec-p384": (ec.SECP384R1, "1.3.132.0.34"),
}
_SUPPORTED_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_RSA_MECHANISMS = {
    "sha256": Mechanism.SHA256_RSA_PKCS,
    "sha384": Mechanism.SHA384_RSA_PKCS,
    "sha512": Mechanism.SHA512_RSA_PKCS,
}
# RFC 8017 9.2 note 1: DigestInfo before the digest, for tokens that offer only CKM_RSA_PKCS.
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
# A session or token that went away: open a new session (after a rescan) and try again.
_GONE = (
    p11.SessionClosed,
    p11.SessionHandleInvalid,
    p11.DeviceRemoved,
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
    p11.UserNotLoggedIn,
    p11.ObjectHandleInvalid,
    p11.KeyHandleInvalid,
    p11.DeviceError,
)
_PIN_REFUSED = (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange, p11.PinExpired, p11.PinLocked)

T = TypeVar("T")
Hash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512


class TokenAbsent(Exception):
    """No token the URI names is present in the module's slots."""


@dataclass(frozen=True)
class Pkcs11Config:
    """A connector's pkcs11 options, checked: the URI, the module and the PIN file."""

    name: str
    uri: Pkcs11Uri
    module_path: str
    pin_file: Path

    @classmethod
    def from_options(cls, name: str, options: Mapping[str, Any], data_dir: Path) -> Pkcs11Config:
        """Check the options ``pkcs11_uri`` and ``pkcs11_pin_file`` of connector *name*."""
        text = options.get("pkcs11_uri")
        if not isinstance(text, str) or not text:
            raise PermanentCAError(f"CA connector {name!r}: option 'pkcs11_uri' is required")
        try:
            uri = parse_pkcs11_uri(text)
            pin_source = pin_source_path(uri.pin_source) if uri.pin_source else None
        except Pkcs11UriError as exc:
            raise PermanentCAError(f"CA connector {name!r}: {exc}") from None
        if uri.token is None and uri.serial is None and uri.slot_id is None:
            raise PermanentCAError(
                f"CA connector {name!r}: pkcs11_uri must name the token (token=LABEL, serial= "
                "or slot-id=)"
            )
        if uri.object is None and uri.id is None:
            raise PermanentCAError(
                f"CA connector {name!r}: pkcs11_uri must name the key (object=LABEL or id=)"
            )
        if uri.module_name is not None and uri.module_path is None:
            raise PermanentCAError(
                f"CA connector {name!r}: pkcs11_uri: module-name is not supported; give "
                f"module-path or set {MODULE_SETTING}"
            )
        module_path = uri.module_path or os.environ.get(MODULE_SETTING, "")
        if not module_path:
            raise PermanentCAError(
                f"CA connector {name!r}: no PKCS#11 module: give module-path in pkcs11_uri "
                f"or set {MODULE_SETTING}"
            )
        pin_option = options.get("pkcs11_pin_file") or pin_source
        if not isinstance(pin_option, str) or not pin_option:
            raise PermanentCAError(
                f"CA connector {name!r}: option 'pkcs11_pin_file' is required (a file holding "
                "the token's PIN)"
            )
        return cls(name, uri, module_path, data_dir / pin_option)

    def read_pin(self) -> str:
        """The PIN, from its file (a trailing newline is not part of it)."""
        try:
            pin = self.pin_file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise PermanentCAError(
                f"CA connector {self.name!r}: cannot read the PIN file {self.pin_file}: {reason}"
            ) from None
        if not pin:
            raise PermanentCAError(
                f"CA connector {self.name!r}: the PIN file {self.pin_file} is empty"
            )
        return pin

    def where(self) -> str:
        """The token, as the URI names it, for messages."""
        named = self.uri.token_attributes
        if self.uri.slot_id is not None:
            named["slot-id"] = str(self.uri.slot_id)
        return "PKCS#11 token " + ", ".join(f"{k}={v!r}" for k, v in named.items())


class _Module:
    """One loaded PKCS#11 library; every session on it is used under its lock."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.generation = 0
        self._lib: Pkcs11Lib | None = None

    def lib(self) -> Pkcs11Lib:
        """The library, loaded and initialised on first use."""
        if self._lib is None:
            self._lib = pkcs11.lib(self.path)
        return self._lib

    def rescan(self) -> None:
        """Finalise and initialise again: the module looks for tokens afresh; sessions end."""
        with self.lock:
            if self._lib is not None:
                self._lib.reinitialize()
            self.generation += 1


_modules: dict[str, _Module] = {}
_modules_lock = threading.Lock()


def _module(config: Pkcs11Config) -> _Module:
    """The process's one _Module for the configured library (a module is initialised once)."""
    with _modules_lock:
        module = _modules.get(config.module_path)
        if module is None:
            module = _modules[config.module_path] = _Module(config.module_path)
    try:
        with module.lock:
            module.lib()
    except p11.PKCS11Error as exc:
        raise PermanentCAError(
            f"CA connector {config.name!r}: cannot load the PKCS#11 module "
            f"{config.module_path}: {_why(exc)}"
        ) from None
    return module


def rescan_modules() -> None:
    """Have every loaded module look for its tokens again (a token added or re-inserted)."""
    with _modules_lock:
        modules = list(_modules.values())
    for module in modules:
        module.rescan()


class Pkcs11CAKey:
    """A CA key in a PKCS#11 token: one logged-in session, reused under the module's lock."""

    def __init__(self, config: Pkcs11Config, pin: str) -> None:
        self._config = config
        self._pin = pin
        self._module = _module(config)
        self._session: pkcs11.Session | None = None
        self._key: pkcs11.PrivateKey | None = None
        self._generation = -1
        self._rsa_combined = True
        self._public: ec.EllipticCurvePublicKey | rsa.RSAPublicKey = self._in_token(
            lambda _key: self._read_public_key()
        )

    def __repr__(self) -> str:
        return f"Pkcs11CAKey({self._config.name!r}, {self._config.where()})"

    @property
    def attributes(self) -> dict[str, bool]:
        """The private key's protection flags as the token reports them."""
        return self._in_token(
            lambda key: {
                "sensitive": bool(key[Attribute.SENSITIVE]),
                "extractable": bool(key[Attribute.EXTRACTABLE]),
                "always_sensitive": bool(key[Attribute.ALWAYS_SENSITIVE]),
                "never_extractable": bool(key[Attribute.NEVER_EXTRACTABLE]),
            }
        )

    def public_key(self) -> CertificatePublicKeyTypes:
        """The CA's public key, as the token holds it."""
        return self._public

    @property
    def signs_quickly(self) -> bool:
        """Never: each signature is a round trip to the token."""
        return False

    def sign_certificate(
        self, builder: x509.CertificateBuilder, algorithm: hashes.HashAlgorithm
    ) -> x509.Certificate:
        """Sign a certificate in the token."""
        algorithm = _supported(algorithm)
        draft = builder.sign(self._throwaway(), algorithm)
        signed = self._resign(
            draft.public_bytes(serialization.Encoding.DER), draft.tbs_certificate_bytes, algorithm
        )
        cert = _load(x509.load_der_x509_certificate, signed, "certificate")
        self._verify(cert.signature, cert.tbs_certificate_bytes, algorithm, "certificate")
        return cert

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder, algorithm: hashes.HashAlgorithm
    ) -> x509.CertificateRevocationList:
        """Sign a CRL in the token."""
        algorithm = _supported(algorithm)
        draft = builder.sign(self._throwaway(), algorithm)
        signed = self._resign(
            draft.public_bytes(serialization.Encoding.DER), draft.tbs_certlist_bytes, algorithm
        )
        crl = _load(x509.load_der_x509_crl, signed, "CRL")
        self._verify(crl.signature, crl.tbs_certlist_bytes, algorithm, "CRL")
        return crl

    def sign_csr(
        self, builder: x509.CertificateSigningRequestBuilder, algorithm: hashes.HashAlgorithm
    ) -> x509.CertificateSigningRequest:
        """Sign a CSR for the token's key (the builder puts the signer's key in the request)."""
        algorithm = _supported(algorithm)
        draft = builder.sign(self._throwaway(), algorithm)
        # CertificationRequestInfo: version, subject, subjectPKInfo, attributes.
        parts = der.elements(draft.tbs_certrequest_bytes)
        if len(parts) != 4:
            raise PermanentCAError(f"CA connector {self._config.name!r}: unexpected CSR layout")
        parts[2] = self._public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        tbs = der.sequence(*parts)
        signed = self._resign(draft.public_bytes(serialization.Encoding.DER), None, algorithm, tbs)
        csr = _load(x509.load_der_x509_csr, signed, "CSR")
        if csr.public_key() != self._public:
            raise PermanentCAError(f"CA connector {self._config.name!r}: CSR key mismatch")
        self._verify(csr.signature, csr.tbs_certrequest_bytes, algorithm, "CSR")
        return csr

    def close(self) -> None:
        """End the session (the key stays usable: the next signature opens a new one)."""
        with self._module.lock:
            self._drop()

    def __del__(self) -> None:
        # A connector replaced by a changed configuration drops its key without closing it;
        # HSMs offer few sessions (a YubiHSM 2 has 16). Never wait for the lock in a finaliser.
        module = getattr(self, "_module", None)
        if module is not None and module.lock.acquire(blocking=False):
            try:
                self._drop()
            finally:
                module.lock.release()

    def _resign(
        self, draft: bytes, tbs: bytes | None, algorithm: Hash, replaced: bytes | None = None
    ) -> bytes:
        """The draft's TBS (or *replaced*) signed in the token, with the draft's algorithm."""
        name = self._config.name
        try:
            draft_tbs, signature_algorithm, _ = der.elements(draft)
        except (der.DERError, ValueError):
            raise PermanentCAError(f"CA connector {name!r}: unexpected signed layout") from None
        if tbs is not None and draft_tbs != tbs:
            raise PermanentCAError(f"CA connector {name!r}: the TBS bytes did not match")
        to_sign = replaced if replaced is not None else draft_tbs
        signature = self._in_token(lambda key: self._sign_bytes(key, to_sign, algorithm))
        return der.signed(to_sign, signature_algorithm, signature)

    def _sign_bytes(self, key: pkcs11.PrivateKey, data: bytes, algorithm: Hash) -> bytes:
        """The signature of *data* as X.509 carries it (DER for ECDSA)."""
        signer = cast(SignMixin, key)
        if isinstance(self._public, ec.EllipticCurvePublicKey):
            # Plain CKM_ECDSA over a digest made here: more tokens offer it than ECDSA_SHA*.
            raw = signer.sign(_digest(data, algorithm), mechanism=Mechanism.ECDSA)
            return der.ecdsa_signature(raw)
        if self._rsa_combined:
            try:
                return signer.sign(data, mechanism=_RSA_MECHANISMS[algorithm.name])
            except p11.MechanismInvalid:
                self._rsa_combined = False
        digest_info = _DIGEST_INFO[algorithm.name] + _digest(data, algorithm)
        return signer.sign(digest_info, mechanism=Mechanism.RSA_PKCS)

    def _verify(self, signature: bytes, tbs: bytes, algorithm: Hash, what: str) -> None:
        """Fail loudly unless the reassembled *what* verifies with the token's public key."""
        try:
            if isinstance(self._public, ec.EllipticCurvePublicKey):
                self._public.verify(signature, tbs, ec.ECDSA(algorithm))
            else:
                self._public.verify(signature, tbs, padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise PermanentCAError(
                f"CA connector {self._config.name!r}: the {what} the token signed does not "
                "verify with the token's public key"
            ) from None

    def _throwaway(self) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
        """A software key of the token key's family, whose signatures are discarded."""
        return _throwaway_key(
            "ec" if isinstance(self._public, ec.EllipticCurvePublicKey) else "rsa"
        )

    def _in_token(self, operation: Callable[[pkcs11.PrivateKey], T]) -> T:
        """Run *operation* on the private key under the module's lock, reconnecting once."""
        name, where = self._config.name, self._config.where()
        with self._module.lock:
            for attempt in (1, 2):
                try:
                    return operation(self._private_key())
                except (TokenAbsent, *_GONE) as exc:
                    self._drop()
                    if attempt == 2:
                        raise TemporaryCAError(
                            f"CA connector {name!r}: the {where} is not available ({_why(exc)})"
                        ) from None
                    log.warning(
                        "PKCS#11 session lost; reconnecting",
                        extra={"ca": name, "error": _why(exc)},
                    )
                    self._module.rescan()
                except _PIN_REFUSED as exc:
                    self._drop()
                    raise PermanentCAError(
                        f"CA connector {name!r}: the {where} refused the PIN from "
                        f"{self._config.pin_file} ({_why(exc)})"
                    ) from None
                except p11.PKCS11Error as exc:
                    raise PermanentCAError(
                        f"CA connector {name!r}: the {where} failed: {_why(exc)}"
                    ) from None
        raise AssertionError("unreachable")

    def _private_key(self) -> pkcs11.PrivateKey:
        """The private key on a logged-in session, opening one when there is none."""
        if self._key is not None and self._generation == self._module.generation:
            return self._key
        self._drop()
        self._generation = self._module.generation
        token = _find_token(self._module.lib(), self._config)
        self._session = _login(token, self._pin, rw=False)
        self._key = _find_private_key(self._session, self._config)
        return self._key

    def _read_public_key(self) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
        """The public half, from the token's public key object or certificate beside the key."""
        assert self._session is not None
        assert self._key is not None
        return _public_key(self._session, self._key, self._config)

    def _drop(self) -> None:
        """Forget the session (closing it if it still works)."""
        session, self._session, self._key = self._session, None, None
        if session is not None and self._generation == self._module.generation:
            with contextlib.suppress(p11.PKCS11Error):
                session.close()


def load_pkcs11_key(name: str, options: Mapping[str, Any], data_dir: Path) -> Pkcs11CAKey:
    """The key of CA connector *name* in the PKCS#11 token its options name."""
    config = Pkcs11Config.from_options(name, options, data_dir)
    return Pkcs11CAKey(config, config.read_pin())


def generate_pkcs11_key(
    name: str, options: Mapping[str, Any], data_dir: Path, key_type: str
) -> tuple[Pkcs11CAKey, bool]:
    """The key the options name, made in the token when it is not there; (key, made)."""
    config = Pkcs11Config.from_options(name, options, data_dir)
    if config.uri.object is None:
        raise PermanentCAError(
            f"CA connector {name!r}: pkcs11_uri must name the new key with object=LABEL"
        )
    if key_type not in _CURVES and key_type not in ("rsa-2048", "rsa-3072", "rsa-4096"):
        raise ValueError(f"key_type: {key_type!r} cannot be made in a token")
    pin = config.read_pin()
    module = _module(config)
    made = False
    with module.lock:
        try:
            token = _find_token(module.lib(), config)
        except TokenAbsent:
            module.rescan()
            try:
                token = _find_token(module.lib(), config)
            except TokenAbsent:
                raise PermanentCAError(f"CA connector {name!r}: no {config.where()}") from None
        try:
            session = _login(token, pin, rw=True)
        except _PIN_REFUSED as exc:
            raise PermanentCAError(
                f"CA connector {name!r}: the {config.where()} refused the PIN from "
                f"{config.pin_file} ({_why(exc)})"
            ) from None
        try:
            if not _private_keys(session, config):
                _generate(session, config, key_type)
                made = True
        except p11.PKCS11Error as exc:
            raise PermanentCAError(
                f"CA connector {name!r}: the {config.where()} could not make the key: {_why(exc)}"
            ) from None
        finally:
            session.close()
    return Pkcs11CAKey(config, pin), made


def _generate(session: pkcs11.Session, config: Pkcs11Config, key_type: str) -> None:
    """A new key pair in the token; the private half sensitive and never extractable."""
    key_id = config.uri.id or secrets.token_bytes(16)
    private = {
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: True,
    }
    public: dict[Attribute, Any] = {Attribute.TOKEN: True, Attribute.VERIFY: True}
    if key_type in _CURVES:
        public[Attribute.EC_PARAMS] = encode_named_curve_parameters(_CURVES[key_type][1])
        session.generate_keypair(
            KeyType.EC,
            store=True,
            label=config.uri.object,
            id=key_id,
            public_template=public,
            private_template=private,
            mechanism=Mechanism.EC_KEY_PAIR_GEN,
        )
    else:
        session.generate_keypair(
            KeyType.RSA,
            int(key_type[4:]),
            store=True,
            label=config.uri.object,
            id=key_id,
            public_template=public,
            private_template=private,
        )


def _find_token(lib: Pkcs11Lib, config: Pkcs11Config) -> pkcs11.Token:
    """The one present token the URI names; TokenAbsent when there is none."""
    uri = config.uri
    library_fields = {
        "manufacturer": lib.manufacturer_id,
        "description": lib.library_description,
    }
    if any(library_fields[k] != v for k, v in uri.library.items()):
        raise TokenAbsent("the module is not the library the URI names")
    if uri.library_version is not None:
        major, _, minor = uri.library_version.partition(".")
        if lib.library_version != (int(major), int(minor or 0)):
            raise TokenAbsent("the module's version is not the one the URI names")
    found: list[pkcs11.Token] = []
    for slot in lib.get_slots(token_present=True):
        if uri.slot_id is not None and slot.slot_id != uri.slot_id:
            continue
        if uri.slot.get("description", slot.slot_description) != slot.slot_description:
            continue
        if uri.slot.get("manufacturer", slot.manufacturer_id) != slot.manufacturer_id:
            continue
        try:
            token = slot.get_token()
        except p11.TokenNotPresent:
            continue
        info = {
            "label": token.label,
            "manufacturer_id": token.manufacturer_id,
            "serial": token.serial.decode("utf-8", "replace").strip(),
            "model": token.model,
        }
        if all(info[k] == v for k, v in uri.token_attributes.items()):
            found.append(token)
    if not found:
        raise TokenAbsent("no such token is present")
    if len(found) > 1:
        raise PermanentCAError(
            f"CA connector {config.name!r}: {len(found)} tokens match pkcs11_uri; name one by "
            "its serial= or slot-id="
        )
    return found[0]


def _login(token: pkcs11.Token, pin: str, *, rw: bool) -> pkcs11.Session:
    """A session logged in as the token's user."""
    try:
        return token.open(rw=rw, user_pin=pin)
    except p11.UserAlreadyLoggedIn:
        # PKCS#11 logs in per application: another session of this process already did.
        return token.open(rw=rw)


def _private_keys(session: pkcs11.Session, config: Pkcs11Config) -> list[pkcs11.PrivateKey]:
    """The private keys the URI's object label and id name."""
    template: dict[Attribute, Any] = {Attribute.CLASS: ObjectClass.PRIVATE_KEY}
    if config.uri.object is not None:
        template[Attribute.LABEL] = config.uri.object
    if config.uri.id is not None:
        template[Attribute.ID] = config.uri.id
    return [k for k in session.get_objects(template) if isinstance(k, pkcs11.PrivateKey)]


def _find_private_key(session: pkcs11.Session, config: Pkcs11Config) -> pkcs11.PrivateKey:
    """The one private key the URI names, of a type and size a CA may use."""
    keys = _private_keys(session, config)
    name, what = config.name, config.uri.describe_key()
    if not keys:
        raise PermanentCAError(
            f"CA connector {name!r}: no private key {what} on the {config.where()}"
        )
    if len(keys) > 1:
        raise PermanentCAError(
            f"CA connector {name!r}: {len(keys)} private keys match {what}; add id= to pkcs11_uri"
        )
    key = keys[0]
    if key.key_type not in (KeyType.EC, KeyType.RSA):
        raise PermanentCAError(f"CA connector {name!r}: the token's key must be EC or RSA")
    if not key[Attribute.SIGN]:
        raise PermanentCAError(f"CA connector {name!r}: the token's key may not sign (CKA_SIGN)")
    if key[Attribute.EXTRACTABLE] or not key[Attribute.SENSITIVE]:
        log.warning(
            "the CA's key in the token can be exported (CKA_EXTRACTABLE or not CKA_SENSITIVE)",
            extra={"ca": name},
        )
    return key


def _public_key(
    session: pkcs11.Session, key: pkcs11.PrivateKey, config: Pkcs11Config
) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The public key paired with *key* (same CKA_ID, else label): its object or certificate."""
    key_id: bytes = key[Attribute.ID]
    match = {Attribute.ID: key_id} if key_id else {Attribute.LABEL: key[Attribute.LABEL]}
    name = config.name
    public: CertificatePublicKeyTypes | None = None
    for obj in session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, **match}):
        if isinstance(obj, pkcs11.PublicKey) and obj.key_type == key.key_type:
            public = _software_public_key(obj)
            break
    else:
        for obj in session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, **match}):
            public = x509.load_der_x509_certificate(obj[Attribute.VALUE]).public_key()
            break
    if public is None:
        raise PermanentCAError(
            f"CA connector {name!r}: no public key or certificate beside the private key "
            f"({config.uri.describe_key()}) on the {config.where()}"
        )
    if isinstance(public, ec.EllipticCurvePublicKey):
        if not isinstance(public.curve, _SUPPORTED_CURVES):
            raise PermanentCAError(
                f"CA connector {name!r}: curve {public.curve.name} is not supported"
            )
        return public
    if isinstance(public, rsa.RSAPublicKey):
        if public.key_size < MIN_RSA_BITS:
            raise PermanentCAError(
                f"CA connector {name!r}: an RSA CA key needs at least {MIN_RSA_BITS} bits"
            )
        return public
    raise PermanentCAError(f"CA connector {name!r}: the token's key must be EC or RSA")


def _software_public_key(obj: pkcs11.PublicKey) -> CertificatePublicKeyTypes | None:
    """A token's public key object as a cryptography public key."""
    if obj.key_type == KeyType.RSA:
        modulus = int.from_bytes(obj[Attribute.MODULUS], "big")
        exponent = int.from_bytes(obj[Attribute.PUBLIC_EXPONENT], "big")
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    public = serialization.load_der_public_key(encode_ec_public_key(obj))
    return public if isinstance(public, ec.EllipticCurvePublicKey) else None


_throwaway_keys: dict[str, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey] = {}
_throwaway_lock = threading.Lock()


def _throwaway_key(family: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """The process's throwaway software key of *family*: it only fixes the algorithm."""
    with _throwaway_lock:
        key = _throwaway_keys.get(family)
        if key is None:
            if family == "ec":
                key = ec.generate_private_key(ec.SECP256R1())
            else:
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _throwaway_keys[family] = key
        return key


def _supported(algorithm: hashes.HashAlgorithm) -> Hash:
    """The hash, if a CA may sign with it."""
    if isinstance(algorithm, hashes.SHA256 | hashes.SHA384 | hashes.SHA512):
        return algorithm
    raise PermanentCAError(f"a CA does not sign with {algorithm.name}")


def _digest(data: bytes, algorithm: Hash) -> bytes:
    """*data*'s digest."""
    digest = hashes.Hash(algorithm)
    digest.update(data)
    return digest.finalize()


def _load(loader: Callable[[bytes], T], data: bytes, what: str) -> T:
    """Parse a reassembled object; a wrong assembly is an error, never a silent success."""
    try:
        return loader(data)
    except ValueError as exc:
        raise PermanentCAError(f"the {what} signed in the token does not parse: {exc}") from None


def _why(exc: BaseException) -> str:
    """A PKCS#11 error in words (the exception's name when it carries no message)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
