"""Jobs the api sends the ca_worker after enrollment: decisions, revocation, deletion, polls."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, TypeVar

from shared.jobs import MalformedJob

J = TypeVar("J", bound="_Job")


@dataclass(frozen=True)
class _Job:
    """A job whose fields are all strings or ints, read back strictly."""

    def to_data(self) -> dict[str, Any]:
        """The job's CloudEvent data."""
        return asdict(self)

    @classmethod
    def from_data(cls: type[J], data: dict[str, Any]) -> J:
        """Read a job's data; MalformedJob when it is not one."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                raise MalformedJob(f"{cls.__name__} lacks {f.name!r}")
            value = data[f.name]
            expected = int if f.type in ("int", int) else str
            if not isinstance(value, expected) or isinstance(value, bool):
                raise MalformedJob(f"{cls.__name__}.{f.name} must be {expected.__name__}")
            values[f.name] = value
        return cls(**values)


@dataclass(frozen=True)
class Decision(_Job):
    """``ca.approve`` / ``ca.deny``: a CA manager decided on a held request."""

    request_id: str
    ca: str
    admin: str
    reason: str


# The reasons a revocation may give (privacyIDEA's; RFC 5280 CRLReason names).
REVOCATION_REASONS = (
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
)


@dataclass(frozen=True)
class Retirement(_Job):
    """``ca.revoke`` / ``ca.delete``: revoke a token's certificate (and delete the token)."""

    serial: str
    reason: str
    admin: str


@dataclass(frozen=True)
class Poll(_Job):
    """``ca.poll``: ask the CA again about a request it holds; *poll* counts the asks."""

    request_id: str
    ca: str
    poll: int
