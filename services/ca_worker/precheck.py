"""Checks of a request before a CA sees it, and of what a CA returns: pure functions."""

from __future__ import annotations

from services.ca_worker.connectors.base import Denied, Issued, Template
from shared.identity import Owner, Refused, decide, differences
from shared.pki import CSRError, load_certificate, parse_csr


def precheck(csr_pem: str, template: Template, owner: Owner) -> Denied | None:
    """Why any CA would refuse *csr_pem* for *owner* under *template*; None: it may be held."""
    try:
        decide(parse_csr(csr_pem), len(csr_pem.encode()), template.name, template, owner)
    except (CSRError, Refused) as exc:
        return Denied(str(exc))
    return None


def postcheck(csr_pem: str, template: Template, owner: Owner, issued: Issued) -> Denied | None:
    """Why a certificate a CA issued later may not be handed out, or None when it is as decided."""
    try:
        csr = parse_csr(csr_pem)
        decision = decide(csr, len(csr_pem.encode()), template.name, template, owner)
    except (CSRError, Refused) as exc:
        return Denied(str(exc))
    surplus = differences(load_certificate(issued.certificate), csr, decision)
    if surplus:
        return Denied(f"the CA issued a certificate with {surplus}, not what certtoken decided")
    return None
