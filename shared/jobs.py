"""The ``csr.sign`` job: everything the ca_worker needs, so it never reads the token first."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


class MalformedJob(ValueError):
    """The job lacks a field or has one of the wrong type."""


@dataclass(frozen=True)
class KeySpec:
    """A key pair the ca_worker generates for the token (``genkey=1``) instead of a CSR."""

    keytype: str  # one of shared.pki.KEY_TYPES
    # Owner values the CSR's subject carries besides CN = login: "email", "realm".
    subject_components: tuple[str, ...] = ()
    # The PKCS#12 password, SecretBox-sealed: a job never carries it in clear.
    sealed_password: str = ""

    @classmethod
    def from_data(cls, data: object) -> KeySpec:
        """Read a job's ``keygen`` object; MalformedJob when it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("keytype"), str):
            raise MalformedJob("csr.sign job keygen must be an object with a keytype")
        components = data.get("subject_components", [])
        if not isinstance(components, list | tuple) or not all(
            isinstance(c, str) for c in components
        ):
            raise MalformedJob("csr.sign job keygen.subject_components must be strings")
        return cls(data["keytype"], tuple(components), str(data.get("sealed_password", "")))


@dataclass(frozen=True)
class SignRequest:
    """A submitted token's signing request, as the api stored it."""

    serial: str
    username: str
    realm: str
    ca: str
    template: str
    request: str
    tokentype: str = "certificate"
    info: dict[str, Any] = field(default_factory=dict)
    # Set for genkey: *request* is then empty until the ca_worker made the key and CSR.
    keygen: KeySpec | None = None
    # The owner's e-mail, givenname and surname as the api read them when it decided the
    # certificate's names; None in jobs of older releases (the ca_worker reads the user then).
    owner: dict[str, str] | None = None

    def to_data(self) -> dict[str, Any]:
        """The job's CloudEvent data."""
        # One level by hand: asdict deep-copies info and owner, which only go to JSON next.
        data = {name: getattr(self, name) for name in _FIELDS}
        if self.keygen is not None:
            data["keygen"] = asdict(self.keygen)
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> SignRequest:
        """Read a job's data; MalformedJob when it is not one."""
        try:
            values = {name: data[name] for name in _REQUIRED}
        except KeyError as exc:
            raise MalformedJob(f"csr.sign job lacks {exc.args[0]!r}") from None
        if not all(isinstance(v, str) for v in values.values()):
            raise MalformedJob("csr.sign job fields must be strings")
        info = data.get("info", {})
        if not isinstance(info, dict):
            raise MalformedJob("csr.sign job info must be an object")
        raw_keygen = data.get("keygen")
        keygen = KeySpec.from_data(raw_keygen) if raw_keygen is not None else None
        owner = data.get("owner")
        if owner is not None and not (
            isinstance(owner, dict) and all(isinstance(v, str) for v in owner.values())
        ):
            raise MalformedJob("csr.sign job owner must be an object of strings")
        return cls(
            **values,
            tokentype=str(data.get("tokentype", "certificate")),
            info=info,
            keygen=keygen,
            owner=owner,
        )


_REQUIRED = ("serial", "username", "realm", "ca", "template", "request")
_FIELDS = tuple(f.name for f in fields(SignRequest))
