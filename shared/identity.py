"""What a certificate says: its subject and SANs, decided from the token owner and the template.

A CSR is evidence of a key, not of a name. :func:`decide` is the one place that turns a CSR,
its owner and its template into what may be certified; the api (before anything is stored),
the ca_worker's precheck and every connector call it, so all give the same answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from shared.csr_rules import CSRPolicy, csr_violation
from shared.echo import cut, echo
from shared.name_values import email_problem, text_problem
from shared.pki import general_name_text, weak_key_reason
from shared.san_rules import KINDS, OWNER_EMAIL, describe_san_rules, matches, value_problem

# Attributes a CA type copies from the CSR's subject wherever the subject it is sent lacks them
# (cfssl fills C, ST, L, O, OU, serialNumber, ... from the CSR): such a CSR is refused.
CA_KEEPS_FROM_CSR: Mapping[str, frozenset[ObjectIdentifier]] = {
    "cfssl": frozenset(
        {
            NameOID.COUNTRY_NAME,
            NameOID.STATE_OR_PROVINCE_NAME,
            NameOID.LOCALITY_NAME,
            NameOID.ORGANIZATION_NAME,
            NameOID.ORGANIZATIONAL_UNIT_NAME,
            NameOID.SERIAL_NUMBER,
            NameOID.POSTAL_CODE,
            NameOID.STREET_ADDRESS,
        }
    )
}

_ADMIN_ROLE = "admin"
_NAME_MAX = 120  # a name (SAN, attributes) quoted in a refusal, in characters
_COMPONENT_OIDS = {
    "email": NameOID.EMAIL_ADDRESS,
    "realm": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "givenname": NameOID.GIVEN_NAME,
    "surname": NameOID.SURNAME,
}
SUBJECT_COMPONENTS = tuple(_COMPONENT_OIDS)
"""Owner attributes a subject may carry besides CN = login (templates, policies)."""
# RFC 5280 appendix A upper bounds (characters) of the attributes certtoken writes or keeps.
_UPPER_BOUNDS = {
    NameOID.COMMON_NAME: 64,
    NameOID.ORGANIZATION_NAME: 64,
    NameOID.ORGANIZATIONAL_UNIT_NAME: 64,
    NameOID.LOCALITY_NAME: 128,
    NameOID.STATE_OR_PROVINCE_NAME: 128,
    NameOID.COUNTRY_NAME: 2,
    NameOID.EMAIL_ADDRESS: 255,
    NameOID.SERIAL_NUMBER: 64,
    NameOID.TITLE: 64,
    NameOID.GIVEN_NAME: 32768,
    NameOID.SURNAME: 32768,
}
_LABELS = {
    NameOID.COMMON_NAME: "CN",
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.GIVEN_NAME: "GN",
    NameOID.SURNAME: "SN",
}


class Refused(ValueError):
    """A CSR that may not become a certificate for this owner; the text names the field."""


@dataclass(frozen=True)
class Owner:
    """Who a certificate is for, as certtoken knows them."""

    username: str
    realm: str = ""
    email: str = ""
    givenname: str = ""
    surname: str = ""
    by_admin: bool = False
    """Whether an administrator made the enrollment (some templates trust their CSR subject)."""


class IdentityRules(CSRPolicy, Protocol):
    """The parts of a template that decide a certificate's names."""

    @property
    def csr_subject(self) -> str:
        """``replace``: the CSR's subject is ignored; ``refuse``: one naming others is refused."""
        ...

    @property
    def admin_csr_subject(self) -> bool:
        """Whether an admin's enrollment keeps the CSR's subject as it is."""
        ...

    @property
    def subject_components(self) -> tuple[str, ...]:
        """Owner attributes the subject carries besides CN = login."""
        ...

    @property
    def sans(self) -> Mapping[str, tuple[str, ...]]:
        """Allowed SAN types, each with the value rules a SAN of that type must match."""
        ...


@dataclass(frozen=True)
class Decision:
    """What certtoken certifies for one CSR: the names, the CSR's key."""

    subject: x509.Name
    sans: tuple[x509.GeneralName, ...]

    @property
    def san_extension(self) -> x509.SubjectAlternativeName | None:
        """The subjectAltName extension, or None when there are no SANs."""
        return x509.SubjectAlternativeName(self.sans) if self.sans else None

    def san_texts(self) -> list[str]:
        """The SANs as text, OpenSSL style."""
        return [general_name_text(name) for name in self.sans]


OWNER_ATTRIBUTES = ("email", "givenname", "surname")
"""What a job carries of its owner besides login and realm (shared.jobs.SignRequest.owner)."""


def owner_of_job(username: str, realm: str, attributes: Mapping[str, str], enrolled: str) -> Owner:
    """The owner as a job carries them; *enrolled* is the token's ``enrolled_by``."""
    email, givenname, surname = (str(attributes.get(name) or "") for name in OWNER_ATTRIBUTES)
    return Owner(username, realm, email, givenname, surname, by_admin(enrolled))


def enrolled_by(role: str, username: str) -> str:
    """Who enrolled a token, as its info records it: ``role:name``."""
    return f"{role}:{username}"


def enrolling_admin(enrolled: str) -> str:
    """The administrator an ``enrolled_by`` value names, or "" when a user enrolled."""
    role, _, name = enrolled.partition(":")
    return name if role == _ADMIN_ROLE else ""


def by_admin(enrolled: str) -> bool:
    """Whether an ``enrolled_by`` value names an administrator."""
    return bool(enrolling_admin(enrolled))


def decide(
    csr: x509.CertificateSigningRequest,
    size: int,
    template: str,
    rules: IdentityRules,
    owner: Owner,
    ca_type: str = "local",
) -> Decision:
    """What *csr* (*size* bytes as sent) may become for *owner* under template *template*."""
    weakness = weak_key_reason(csr.public_key())
    if weakness:
        raise Refused(f"request: {weakness}")
    violation = csr_violation(csr, size, template, rules)
    if violation:
        raise Refused(violation)
    for attribute in csr.subject:
        _check_text_attribute(attribute, "request: the CSR's subject")
    built = owner_subject(owner, template, rules.subject_components)
    if owner.by_admin and rules.admin_csr_subject and len(csr.subject):
        for attribute in csr.subject:
            _check_attribute(attribute, "request: the CSR's subject")
        subject = csr.subject
    else:
        if rules.csr_subject == "refuse":
            _refuse_foreign_subject(csr.subject, built, template)
        subject = built
    _refuse_kept_attributes(csr.subject, subject, ca_type)
    return Decision(subject, _sans(csr, template, rules, owner))


def owner_subject(owner: Owner, template: str, components: Sequence[str]) -> x509.Name:
    """The subject certtoken builds: CN = login, then the owner's *components*."""
    if not owner.username:
        raise Refused("user: the token has no owner to name in the certificate")
    values = [(NameOID.COMMON_NAME, owner.username)]
    for component in dict.fromkeys(components):
        value = _component_value(owner, component, template)
        if value:
            values.append((_COMPONENT_OIDS[component], value))
    attributes = [_owner_attribute(oid, value) for oid, value in values]
    return x509.Name([x509.RelativeDistinguishedName([a]) for a in attributes])


def _owner_attribute(oid: ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    """One attribute of the owner's subject; Refused when a certificate cannot carry it."""
    label = _LABELS.get(oid, oid.dotted_string)
    bound = _UPPER_BOUNDS.get(oid)
    if bound is not None and len(value) > bound:
        raise Refused(
            f"user: the owner's {label} has {len(value)} characters; a certificate allows {bound}"
        )
    attribute = x509.NameAttribute(oid, value)
    _check_attribute(attribute, "user: the owner's")
    return attribute


def differences(
    cert: x509.Certificate, csr: x509.CertificateSigningRequest, decided: Decision
) -> str:
    """What a certificate a CA returned says beyond *decided* ("" when it says just that)."""
    problems = []
    if cert.public_key() != csr.public_key():
        problems.append("a different public key")
    if _attributes(cert.subject) != _attributes(decided.subject):
        problems.append(f"subject {cert.subject.rfc4514_string()!r}")
    try:
        sans = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = []
    if set(map(general_name_text, sans)) != set(decided.san_texts()):
        problems.append(f"subjectAltName {', '.join(map(general_name_text, sans)) or 'none'}")
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            problems.append("a CA flag")
    except x509.ExtensionNotFound:
        pass
    return "; ".join(problems)


# --- the subject ---------------------------------------------------------------------------


def _component_value(owner: Owner, component: str, template: str) -> str:
    if component == "email":
        if not owner.email:
            raise Refused(
                f"user: template {template!r} puts the owner's e-mail address in the subject, "
                f"but user {owner.username!r} has none"
            )
        _check_email(owner.email, "user: the owner's e-mail address")
        return owner.email
    if component not in _COMPONENT_OIDS:
        raise Refused(f"template: {template!r} names an unknown subject component {component!r}")
    value: str = getattr(owner, component)  # the Owner field of the same name
    return value


def _refuse_foreign_subject(requested: x509.Name, built: x509.Name, template: str) -> None:
    """Refuse a CSR subject with any attribute the owner's subject does not have."""
    own = {(a.oid, a.value) for a in built}
    foreign = [a for a in requested if (a.oid, a.value) not in own]
    if foreign:
        names = x509.Name([x509.RelativeDistinguishedName([a]) for a in foreign])
        raise Refused(
            f"request: the CSR's subject names {echo(names.rfc4514_string())}; template "
            f"{template!r} builds the subject from the token owner ({built.rfc4514_string()}) "
            "and refuses any other (csr_subject=refuse); send a CSR with an empty subject"
        )


def _refuse_kept_attributes(requested: x509.Name, subject: x509.Name, ca_type: str) -> None:
    """Refuse CSR attributes that a CA of *ca_type* would copy into *subject*."""
    keeps = CA_KEEPS_FROM_CSR.get(ca_type, frozenset())
    present = {a.oid for a in subject}
    kept = [a.rfc4514_string() for a in requested if a.oid in keeps and a.oid not in present]
    if kept:
        carried = cut(", ".join(kept), _NAME_MAX)
        raise Refused(
            f"request: the CSR's subject carries {carried}, which a {ca_type} CA copies into "
            "the certificate; send a CSR without them (CN alone, or empty)"
        )


def _check_text_attribute(attribute: x509.NameAttribute[str | bytes], where: str) -> str:
    """The attribute's text; Refused for a binary value or control characters."""
    value = attribute.value
    if not isinstance(value, str):
        raise Refused(f"{where}: {_label(attribute)} is not a text value")
    problem = text_problem(value)
    if problem:
        raise Refused(f"{where} {_label(attribute)}: {problem}")
    return value


def _check_attribute(attribute: x509.NameAttribute[str | bytes], where: str) -> None:
    """Refuse an attribute a certificate cannot carry: control characters, over its bound."""
    value = _check_text_attribute(attribute, where)
    bound = _UPPER_BOUNDS.get(attribute.oid)
    if bound is not None and len(value) > bound:
        label = _label(attribute)
        raise Refused(f"{where}: {label} has {len(value)} characters; at most {bound} are allowed")
    if attribute.oid == NameOID.COUNTRY_NAME and not re.fullmatch(r"[A-Z]{2}", value):
        raise Refused(f"{where}: C must be a two-letter country code")
    if attribute.oid == NameOID.EMAIL_ADDRESS:
        _check_email(value, f"{where} emailAddress")


def _attributes(name: x509.Name) -> list[tuple[str, str | bytes]]:
    """A name's attributes in a fixed order: a CA may order the RDNs its own way."""
    return sorted((a.oid.dotted_string, a.value) for a in name)


def _label(attribute: x509.NameAttribute[str | bytes]) -> str:
    """The attribute's short name (CN, O, emailAddress, ...) or dotted OID (for refusals only)."""
    return attribute.rfc4514_string().partition("=")[0]


# --- the subject alternative names ------------------------------------------------------------


def _sans(
    csr: x509.CertificateSigningRequest, template: str, rules: IdentityRules, owner: Owner
) -> tuple[x509.GeneralName, ...]:
    """The CSR's SANs when the template allows each, plus the owner's address where allowed."""
    try:
        requested = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        requested = []
    allowed = rules.sans
    chosen: list[x509.GeneralName] = []
    if OWNER_EMAIL in allowed.get("email", ()) and owner.email:
        _check_email(owner.email, "user: the owner's e-mail address")
        chosen.append(x509.RFC822Name(owner.email))
    for name in requested:
        kind = KINDS.get(type(name))
        text = cut(general_name_text(name), _NAME_MAX)
        if kind is None or kind not in allowed:
            raise Refused(_not_allowed(text, template, rules))
        problem = value_problem(kind, name)
        if problem:
            raise Refused(f"request: subjectAltName {text!r} is not a valid {kind} name: {problem}")
        if not any(matches(kind, name, rule, owner.email) for rule in allowed[kind]):
            raise Refused(_not_allowed(text, template, rules))
        name = _canonical(name, owner)
        if name not in chosen:
            chosen.append(name)
    return tuple(chosen)


def _canonical(name: x509.GeneralName, owner: Owner) -> x509.GeneralName:
    """DNS names in lower case; the owner's address as the user store spells it."""
    if isinstance(name, x509.DNSName):
        return x509.DNSName(name.value.lower())
    if isinstance(name, x509.RFC822Name) and name.value.lower() == owner.email.lower():
        return x509.RFC822Name(owner.email)
    return name


def _not_allowed(text: str, template: str, rules: IdentityRules) -> str:
    return (
        f"request: subjectAltName {text} is not allowed by template {template!r} "
        f"(allowed: {describe_san_rules(rules.sans)})"
    )


def _check_email(value: str, where: str) -> None:
    """Refuse an address a certificate cannot carry."""
    problem = text_problem(value) or email_problem(value)
    if problem:
        raise Refused(f"{where} {echo(value)} is not a valid e-mail address: {problem}")
