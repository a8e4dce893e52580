"""Pure CA rules: templates, polls, settlements, prechecks, jobs, cfssl helpers."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from services.ca_worker.connectors.base import Denied, Issued, Pending, Template
from services.ca_worker.connectors.cfssl import auth_token, error_message
from services.ca_worker.lifecycle import settlement
from services.ca_worker.polling import poll_delay_ms, poll_queue
from services.ca_worker.precheck import precheck
from shared.ca_jobs import Decision, Poll, Retirement
from shared.ca_templates import TemplateOptions, template_options
from shared.cfssl_options import cfssl_options
from shared.identity import Owner
from shared.jobs import MalformedJob
from shared.token_states import Trigger


def csr(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None,
    sans: list[x509.GeneralName] | None = None,
) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    signed = builder.sign(key or ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    return signed.public_bytes(serialization.Encoding.PEM).decode()


def test_poll_delays_grow_then_stay_at_the_cap() -> None:
    delays = [1000, 5000, 30000, 120000]
    assert [poll_delay_ms(n, delays) for n in range(7)] == [
        1000,
        5000,
        30000,
        120000,
        120000,
        120000,
        120000,
    ]
    assert poll_queue(0, delays) == "certtoken.ca_worker.retry.1000"
    with pytest.raises(ValueError):
        poll_delay_ms(0, [])


def test_settlement_of_a_held_request() -> None:
    now = datetime.now(UTC)
    issued = settlement(Issued("PEM", "ab", "CN=a", now, now))
    assert issued is not None and issued.trigger == Trigger.ISSUE_HELD
    assert (issued.status, issued.facts.certificate_serial) == ("issued", "ab")
    denied = settlement(Denied("no", "E42"))
    assert denied is not None and denied.trigger == Trigger.REFUSE_HELD
    assert (denied.status, denied.facts.reason, denied.facts.detail) == ("denied", "no", "E42")
    assert settlement(Pending("r1")) is None


def test_precheck_refuses_what_any_ca_would() -> None:
    owner = Owner("alice", "corp", "alice@example.org")
    assert precheck(csr(), Template(), owner) is None
    weak_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak = precheck(csr(weak_key), Template(), owner)
    assert isinstance(weak, Denied) and "1024" in weak.reason
    garbage = precheck("not a csr", Template(), owner)
    assert isinstance(garbage, Denied) and "request" in garbage.reason
    dns_only = Template(name="t", sans={"DNS": ("*.example.org",)})
    with_email = csr(sans=[x509.RFC822Name("alice@example.org")])
    refused = precheck(with_email, dns_only, owner)
    assert isinstance(refused, Denied) and "email:alice@example.org" in refused.reason
    assert precheck(csr(sans=[x509.DNSName("a.example.org")]), dns_only, owner) is None


def test_template_options_validate_and_split_form_lists() -> None:
    options = template_options({"key_usage": "digitalSignature, keyAgreement", "approval": "none"})
    assert options.key_usage == ("digitalSignature", "keyAgreement")
    template = Template.from_options("t", options)
    assert not template.needs_approval and template.sans == {"email": ("owner",)}
    assert Template.from_options("t", TemplateOptions(approval="required")).needs_approval
    for bad, field in (
        ({"key_usage": ["cRLSign"]}, "key_usage"),
        ({"extended_key_usage": ["anyExtendedKeyUsage"]}, "extended_key_usage"),
        ({"extended_key_usage": ["1.2.x"]}, "extended_key_usage"),
        ({"allowed_sans": ["otherName"]}, "allowed_sans"),
        ({"allowed_sans": ["DNS"]}, "need value rules"),
        ({"sans": {"otherName": ["x"]}}, "unknown SAN type"),
        ({"sans": {"DNS": ["*.bad_zone"]}}, "sans"),
        ({"sans": {"IP": ["10.0.0.0/33"]}}, "CIDR"),
        ({"sans": "DNS"}, "TYPE:rule"),
        ({"validity_days": -1}, "validity_days"),
        ({"unknown": 1}, "unknown"),
    ):
        with pytest.raises(ValueError, match=field):
            template_options(bad)
    assert template_options({"extended_key_usage": ["1.3.6.1.5.5.7.3.4"]})
    form = template_options({"sans": "email:owner, DNS:*.corp.example, IP:10.0.0.0/8"})
    assert form.sans == {"email": ("owner",), "DNS": ("*.corp.example",), "IP": ("10.0.0.0/8",)}
    assert template_options({"allowed_sans": "email"}).sans == {"email": ("owner",)}
    assert template_options({"allowed_sans": []}).sans == {}
    assert template_options({"allowed_sans": None}).sans == {"email": ("owner",)}


def test_jobs_round_trip_and_refuse_bad_data() -> None:
    for job in (
        Decision("r1", "localca", "admin", "why"),
        Retirement("CRT0000000A", "keyCompromise", "admin"),
        Poll("r1", "msca", 3),
    ):
        assert type(job).from_data(job.to_data()) == job
    with pytest.raises(MalformedJob, match="poll"):
        Poll.from_data({"request_id": "r1", "ca": "x", "poll": "3"})
    with pytest.raises(MalformedJob, match="admin"):
        Decision.from_data({"request_id": "r1", "ca": "x", "reason": ""})
    with pytest.raises(MalformedJob):
        Poll.from_data({"request_id": "r1", "ca": "x", "poll": True})


def test_cfssl_helpers() -> None:
    key, body = bytes.fromhex("00ff" * 8), b'{"certificate_request":"x"}'
    expected = base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()
    assert auth_token(key, body) == expected
    answer = b'{"success":false,"errors":[{"code":400,"message":"invalid token"}]}'
    assert error_message(answer) == "invalid token"
    assert error_message(b"<html>bad gateway</html>") == "<html>bad gateway</html>"
    assert len(error_message(b"x" * 5000)) == 300
    options = cfssl_options({"url": "https://ca.example.org:8888/", "timeout": 3})
    assert options.url == "https://ca.example.org:8888" and options.tls_verify
    for bad, field in (
        ({"url": "ca.example.org"}, "url"),
        ({"url": "http://x", "cacert": "x"}, "cacert"),
    ):
        with pytest.raises(ValueError, match=field):
            cfssl_options(bad)
