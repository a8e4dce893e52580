"""Checks a request must pass before a CA manager is asked to approve it: pure functions."""

from __future__ import annotations

from cryptography import x509

from services.ca_worker.connectors.base import Denied, Template
from shared.csr_rules import csr_violation
from shared.pki import CSRError, general_name_text, parse_csr, weak_key_reason


def precheck(csr_pem: str, template: Template) -> Denied | None:
    """Why any CA would refuse *csr_pem* under *template*, or None when it may be held."""
    try:
        csr = parse_csr(csr_pem)
    except CSRError as exc:
        return Denied(str(exc))
    weakness = weak_key_reason(csr.public_key())
    if weakness:
        return Denied(f"request: {weakness}")
    violation = csr_violation(csr, len(csr_pem.encode()), template.name, template)
    if violation:
        return Denied(violation)
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if not csr.subject and san is None:
        return Denied("request: the CSR has neither a subject nor a subjectAltName")
    if san is not None and template.allowed_sans is not None:
        for name in san:
            text = general_name_text(name)
            if text.split(":", 1)[0] not in template.allowed_sans:
                return Denied(
                    f"request: subjectAltName {text} is not allowed by template {template.name!r}"
                )
    return None
