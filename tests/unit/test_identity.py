"""shared.identity: SAN value rules, the subject built from the owner, issued-certificate checks."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.ca_templates import TemplateOptions, template_options
from shared.identity import Decision, Owner, Refused, decide, differences

KEY = ec.generate_private_key(ec.SECP256R1())
ALICE = Owner("alice", "corp", "alice@corp.example", "Alice", "Liddell")
RULES = template_options(
    {
        "sans": {
            "email": ["owner", "*@lists.corp.example"],
            "DNS": ["*.corp.example", "vpn.partner.example"],
            "IP": ["10.1.0.0/16", "192.0.2.7"],
            "URI": ["https://id.corp.example/*", "urn:corp:alice"],
        }
    }
)


def csr(*sans: x509.GeneralName, subject: str = "") -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name.from_rfc4514_string(subject)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(KEY, hashes.SHA256())


def decided(*sans: x509.GeneralName, rules: TemplateOptions = RULES) -> list[str]:
    return decide(csr(*sans), 500, "t", rules, ALICE).san_texts()


@pytest.mark.parametrize(
    "name",
    [
        x509.RFC822Name("list@lists.corp.example"),
        x509.DNSName("a.b.corp.example"),
        x509.DNSName("VPN.partner.example"),
        x509.IPAddress(ipaddress.ip_address("10.1.200.3")),
        x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
        x509.UniformResourceIdentifier("https://id.corp.example/alice"),
        x509.UniformResourceIdentifier("urn:corp:alice"),
    ],
)
def test_values_the_rules_allow(name: x509.GeneralName) -> None:
    sans = decided(name)
    assert sans[0] == "email:alice@corp.example"
    assert len(sans) == 2 and sans[1].lower().endswith(str(name.value).lower())


@pytest.mark.parametrize(
    ("name", "words"),
    [
        (x509.RFC822Name("bob@corp.example"), "not allowed"),
        (x509.RFC822Name("x@evil-lists.corp.example"), "not allowed"),
        (x509.DNSName("corp.example"), "not allowed"),
        (x509.DNSName("acorp.example"), "not allowed"),
        (x509.DNSName("*.corp.example"), "wildcards"),
        (x509.DNSName("a_b.corp.example"), "not a valid DNS"),
        (x509.DNSName("partner.example"), "not allowed"),
        (x509.IPAddress(ipaddress.ip_address("10.2.0.1")), "not allowed"),
        (x509.IPAddress(ipaddress.ip_network("10.1.0.0/24")), "network"),
        (x509.UniformResourceIdentifier("https://id.corp.example.evil/x"), "not allowed"),
        (x509.UniformResourceIdentifier("https://u:p@id.corp.example/x"), "user information"),
        (x509.UniformResourceIdentifier("no scheme"), "not a valid URI"),
        (x509.RegisteredID(x509.ObjectIdentifier("1.2.3")), "not allowed"),
        (x509.DirectoryName(x509.Name.from_rfc4514_string("CN=admin")), "not allowed"),
    ],
)
def test_values_the_rules_refuse(name: x509.GeneralName, words: str) -> None:
    with pytest.raises(Refused, match=f"^request: subjectAltName .*{words}"):
        decided(name)


def test_the_owners_address_is_added_once_and_spelled_as_stored() -> None:
    assert decided(x509.RFC822Name("ALICE@Corp.Example")) == ["email:alice@corp.example"]
    assert decided(rules=template_options({"sans": {}})) == []
    nobody = Owner("bob", "corp")
    assert decide(csr(), 500, "t", RULES, nobody).sans == ()


def test_the_subject_comes_from_the_owner() -> None:
    rules = template_options({"subject_components": ["email", "realm", "givenname", "surname"]})
    decision = decide(csr(subject="CN=admin,O=Evil"), 500, "t", rules, ALICE)
    assert decision.subject == x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "alice@corp.example"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "corp"),
            x509.NameAttribute(NameOID.GIVEN_NAME, "Alice"),
            x509.NameAttribute(NameOID.SURNAME, "Liddell"),
        ]
    )
    with pytest.raises(Refused, match=r"^user: .*has none"):
        decide(csr(), 500, "t", rules, Owner("bob", "corp"))
    with pytest.raises(
        Refused, match=r"^user: the owner's CN has 65 characters; a certificate allows 64"
    ):
        decide(csr(), 500, "t", rules, Owner("x" * 65, "corp", "x@corp.example"))
    with pytest.raises(Refused, match=r"^user: .*not a valid e-mail"):
        decide(csr(), 500, "t", rules, Owner("carol", "corp", "carol@@corp"))


def test_cfssl_would_copy_some_attributes_so_they_are_refused() -> None:
    with pytest.raises(Refused, match="O=Evil, which a cfssl CA copies"):
        decide(csr(subject="CN=admin,O=Evil"), 500, "t", RULES, ALICE, "cfssl")
    kept_ou = template_options({"subject_components": ["realm"]})
    decision = decide(csr(subject="CN=x,OU=evil"), 500, "t", kept_ou, ALICE, "cfssl")
    assert decision.subject.rfc4514_string() == "OU=corp,CN=alice"


def certificate(
    subject: x509.Name, sans: list[x509.GeneralName], *, ca: bool = False, key: object = None
) -> x509.Certificate:
    now = datetime.now(UTC)
    public = (key or KEY).public_key()  # type: ignore[attr-defined]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name.from_rfc4514_string("CN=ca"))
        .public_key(public)
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(KEY, hashes.SHA256())


def test_a_returned_certificate_must_say_what_was_decided() -> None:
    request = csr()
    decision = decide(request, 500, "t", RULES, ALICE)
    mail: list[x509.GeneralName] = [x509.RFC822Name("alice@corp.example")]
    assert differences(certificate(decision.subject, mail), request, decision) == ""
    extra = [*mail, x509.DNSName("www.google.com")]
    assert "subjectAltName" in differences(certificate(decision.subject, extra), request, decision)
    other = x509.Name.from_rfc4514_string("CN=admin")
    assert "subject 'CN=admin'" in differences(certificate(other, mail), request, decision)
    assert "a CA flag" in differences(
        certificate(decision.subject, mail, ca=True), request, decision
    )
    stranger = ec.generate_private_key(ec.SECP256R1())
    assert "public key" in differences(
        certificate(decision.subject, mail, key=stranger), request, decision
    )
    assert Decision(decision.subject, ()).san_extension is None
