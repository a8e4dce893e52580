"""Checks a request must pass before a CA manager is asked to approve it: pure functions."""

from __future__ import annotations

from services.ca_worker.connectors.base import Denied, Template
from shared.identity import Owner, Refused, decide
from shared.pki import CSRError, parse_csr


def precheck(csr_pem: str, template: Template, owner: Owner) -> Denied | None:
    """Why any CA would refuse *csr_pem* for *owner* under *template*; None: it may be held."""
    try:
        decide(parse_csr(csr_pem), len(csr_pem.encode()), template.name, template, owner)
    except (CSRError, Refused) as exc:
        return Denied(str(exc))
    return None
