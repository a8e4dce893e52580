"""The ``csr.sign`` job: everything the ca_worker needs, so it never reads the token first."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class MalformedJob(ValueError):
    """The job lacks a field or has one of the wrong type."""


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

    def to_data(self) -> dict[str, Any]:
        """The job's CloudEvent data."""
        return asdict(self)

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
        return cls(**values, tokentype=str(data.get("tokentype", "certificate")), info=info)


_REQUIRED = ("serial", "username", "realm", "ca", "template", "request")
