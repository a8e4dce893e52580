"""Properties of the subject/SAN decision: whatever a CSR asks, the answer names only its owner."""

from __future__ import annotations

import ipaddress
import unicodedata
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shared.ca_templates import TemplateOptions, template_options
from shared.identity import Decision, Owner, Refused, decide

_KEY = ec.generate_private_key(ec.SECP256R1())
OWNER = Owner("alice", "corp", "alice@corp.example", "Alice", "Liddell")
DEFAULT = TemplateOptions()
ZONE = template_options(
    {
        "sans": {
            "email": ["owner", "*@lists.corp.example"],
            "DNS": ["*.corp.example"],
            "IP": ["10.1.0.0/16"],
            "URI": ["https://id.corp.example/*"],
        },
        "subject_components": ["email", "realm", "givenname", "surname"],
    }
)
ZONE_SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
        x509.NameAttribute(NameOID.EMAIL_ADDRESS, "alice@corp.example"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "corp"),
        x509.NameAttribute(NameOID.GIVEN_NAME, "Alice"),
        x509.NameAttribute(NameOID.SURNAME, "Liddell"),
    ]
)

_OIDS = [
    NameOID.COMMON_NAME,
    NameOID.ORGANIZATION_NAME,
    NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.EMAIL_ADDRESS,
    NameOID.SERIAL_NUMBER,
    NameOID.LOCALITY_NAME,
]
# Text that mixes the dangerous (controls, bidi overrides, separators) with the ordinary.
_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("alice.corp-example@*/:=, \r\n\x00\x1b\u202e\u2028")),
        st.characters(codec="utf-8"),
    ),
    max_size=40,
)
_hosts = st.one_of(
    _text,
    st.from_regex(r"[a-z0-9-]{1,12}(\.[a-z0-9-]{1,12}){0,3}\.corp\.example", fullmatch=True),
    st.sampled_from(["corp.example", "evil.example", "*.corp.example", "a..corp.example"]),
)
_emails = st.one_of(
    _text,
    st.sampled_from(["alice@corp.example", "ALICE@corp.example", "bob@corp.example"]),
    st.from_regex(r"[a-z]{1,8}@lists\.corp\.example", fullmatch=True),
)
_uris = st.one_of(_text, st.sampled_from(["https://id.corp.example/alice", "https://evil/x"]))
_ips = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))


@st.composite
def general_names(draw: st.DrawFn) -> x509.GeneralName:
    """A SAN of any of the four types, with a value that may be anything."""
    kind = draw(st.sampled_from(["DNS", "email", "URI", "IP"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if kind == "DNS":
                return x509.DNSName(draw(_hosts))
            if kind == "email":
                return x509.RFC822Name(draw(_emails))
            if kind == "URI":
                return x509.UniformResourceIdentifier(draw(_uris))
            return x509.IPAddress(draw(_ips))
        except ValueError:
            assume(False)
            raise


@st.composite
def csrs(draw: st.DrawFn) -> x509.CertificateSigningRequest:
    """A signed CSR whose subject and SANs are drawn freely."""
    attributes = []
    for oid, value in draw(st.lists(st.tuples(st.sampled_from(_OIDS), _text), max_size=4)):
        try:
            attributes.append(x509.NameAttribute(oid, value))
        except ValueError:
            assume(False)
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    sans = draw(st.lists(general_names(), max_size=4, unique_by=repr))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    try:
        signed = builder.sign(_KEY, hashes.SHA256())
    except ValueError:
        assume(False)
        raise
    # Parsed back from DER, as the services see it.
    der = signed.public_bytes(serialization.Encoding.DER)
    return x509.load_der_x509_csr(der)


def attempt(
    csr: x509.CertificateSigningRequest, name: str, options: TemplateOptions, owner: Owner
) -> Decision | None:
    """The decision, or None for a refusal (which must name its field)."""
    refusal = ""
    try:
        return decide(csr, 1000, name, options, owner)
    except Refused as exc:
        refusal = str(exc)
    assert refusal.startswith(("request: ", "user: ")), refusal
    return None


def _clean(value: str) -> bool:
    return all(
        unicodedata.category(c)[0] != "C" and unicodedata.category(c) not in ("Zl", "Zp")
        for c in value
    )


def _allowed_by_zone(name: x509.GeneralName) -> bool:
    value = name.value
    if isinstance(name, x509.RFC822Name):
        return value.lower() == OWNER.email or value.lower().endswith("@lists.corp.example")
    if isinstance(name, x509.DNSName):
        return value.lower().endswith(".corp.example") and "*" not in value
    if isinstance(name, x509.IPAddress):
        return value in ipaddress.ip_network("10.1.0.0/16")
    return isinstance(name, x509.UniformResourceIdentifier) and value.startswith(
        "https://id.corp.example/"
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csr=csrs(), by_admin=st.booleans())
def test_the_default_template_certifies_only_the_owner(
    csr: x509.CertificateSigningRequest, by_admin: bool
) -> None:
    owner = Owner(OWNER.username, OWNER.realm, OWNER.email, by_admin=by_admin)
    decision = attempt(csr, "default", DEFAULT, owner)
    if decision is None:
        return
    assert decision.subject.rfc4514_string() == "CN=alice"
    assert decision.sans == (x509.RFC822Name("alice@corp.example"),)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csr=csrs())
def test_a_zone_template_certifies_its_zone_and_nothing_else(
    csr: x509.CertificateSigningRequest,
) -> None:
    decision = attempt(csr, "zone", ZONE, OWNER)
    if decision is None:
        return
    assert decision.subject == ZONE_SUBJECT
    assert decision.sans[0] == x509.RFC822Name("alice@corp.example")
    for name in decision.sans:
        assert _allowed_by_zone(name), name
        assert isinstance(name, x509.IPAddress) or _clean(name.value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csr=csrs())
def test_an_admin_verbatim_subject_is_clean_and_bounded(
    csr: x509.CertificateSigningRequest,
) -> None:
    verbatim = template_options({"admin_csr_subject": True})
    owner = Owner(OWNER.username, OWNER.realm, OWNER.email, by_admin=True)
    decision = attempt(csr, "verbatim", verbatim, owner)
    if decision is None:
        return
    for attribute in decision.subject:
        assert isinstance(attribute.value, str) and _clean(attribute.value)
        assert len(attribute.value) <= 255
    if len(csr.subject):
        assert decision.subject == csr.subject
