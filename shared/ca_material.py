"""What a local CA connector's options say of its material: readiness, chain, public URLs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Set by `certtoken ca create --csr-out` and removed by `certtoken ca install`.
AWAITING_INSTALL = "awaiting_install"
# The certificates above the CA (PEM bundle, its issuer first, up to the root).
CHAIN = "chain"
# The CA's generation: 1 until the first `certtoken ca rollover`, then one more each time.
GENERATION = "generation"
# Set by `certtoken ca rollover --csr-out`: the next generation's key, awaiting `ca install`.
ROLLOVER = "rollover"


def not_ready_reason(name: str, options: Mapping[str, Any]) -> str | None:
    """Why connector *name* cannot issue yet; None when it can."""
    if options.get(AWAITING_INSTALL):
        return (
            f"CA connector {name} is not ready "
            "(its certificate is not installed: certtoken ca install)"
        )
    return None


def generation_of(options: Mapping[str, Any]) -> int:
    """The CA's current generation (1 before any rollover)."""
    value = options.get(GENERATION, 1)
    return value if isinstance(value, int) and value > 0 else 1


def pending_rollover(options: Mapping[str, Any]) -> dict[str, Any] | None:
    """The next generation's key options while a rollover awaits `ca install`; else None."""
    value = options.get(ROLLOVER)
    return dict(value) if isinstance(value, Mapping) else None


def chain_pems(options: Mapping[str, Any]) -> tuple[str, ...]:
    """The PEM certificates above the CA, issuer first (none for a root)."""
    value = options.get(CHAIN)
    if not isinstance(value, str):
        return ()
    marker = "-----END CERTIFICATE-----"
    parts = [part.strip() for part in value.split(marker)]
    return tuple(f"{part}\n{marker}\n" for part in parts if part)


def public_urls(public_url: str, name: str, generation: int = 1) -> dict[str, str] | None:
    """The CRL, OCSP and CA-issuers URLs of CA *name* under *public_url*; None when it is off.

    Generation 1's certificates name the plain CRL URL; a later generation's name its own
    CRL. Every generation's name its own CA certificate (the plain ``/cacert`` is the current
    one, which after a rollover did not sign them), so each URL stays one key's for good.
    """
    if not public_url:
        return None
    base = f"{public_url}/ca/{name}"
    own = "" if generation == 1 else f"/{generation}"
    # RFC 5280 4.2.2.1: caIssuers points at a DER certificate.
    return {
        "crl": f"{base}/crl{own}",
        "ocsp": f"{base}/ocsp",
        "ca_issuers": f"{base}/cacert/{generation}?format=der",
    }
