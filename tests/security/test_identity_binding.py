"""A certificate names only its owner: foreign subjects and SANs over real HTTP, every connector."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from services.ca_worker.handlers import job_owner
from shared.db.models import OutboxMessage, Token
from shared.identity import Owner
from shared.jobs import SignRequest
from tests.support.cfssl import CfsslServer
from tests.support.stack import Stack

PASSWORD = "Alice-Binding-Pw-51c9"
ALICE_MAIL = "alice@corp.example"
ZONE = "zone"  # a template allowing DNS names under corp.example
_KEY = ec.generate_private_key(ec.SECP256R1())


def csr(subject: list[tuple[Any, str]], sans: list[x509.GeneralName] | None = None) -> str:
    """A CSR with *subject* attributes (OID, value) and *sans*, signed by one test key."""
    name = x509.Name([x509.NameAttribute(oid, value) for oid, value in subject])
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(_KEY, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


FOREIGN_SUBJECT = [
    (NameOID.COMMON_NAME, "admin"),
    (NameOID.ORGANIZATION_NAME, "Evil Corp"),
    (NameOID.EMAIL_ADDRESS, "ceo@corp.example"),
]
FOREIGN_CN = [(NameOID.COMMON_NAME, "admin"), (NameOID.EMAIL_ADDRESS, "ceo@corp.example")]
FOREIGN_SANS: list[x509.GeneralName] = [
    x509.DNSName("www.google.com"),
    x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
    x509.UniformResourceIdentifier("https://evil.example/alice"),
    x509.RFC822Name("ceo@corp.example"),
    x509.DNSName("corp.example"),  # the zone itself is not under it
    x509.DNSName("*.corp.example"),  # no wildcard certificates from "*.corp.example"
]
CONTROL_SUBJECTS = [
    [(NameOID.COMMON_NAME, "alice\r\nCN=admin")],
    [(NameOID.COMMON_NAME, "alice\x00admin")],
    [(NameOID.ORGANIZATION_NAME, "Corp\u202e")],
]


@dataclass
class Bound:
    """A stack with alice@corp, a zone template on each CA, and who calls."""

    stack: Stack
    user_token: str
    admin_token: str
    cas: tuple[str, ...]


@pytest.fixture
async def bound(memory_stack: Stack, cfssl: CfsslServer) -> Bound:
    """alice@corp with an e-mail address; localca and a cfssl CA, each with a DNS-zone template."""
    admin = await memory_stack.admin_token()
    async with memory_stack.client(admin) as client:
        made = await client.post(
            "/user/",
            json={"user": "alice", "realm": "corp", "email": ALICE_MAIL, "password": PASSWORD},
        )
        assert made.status_code == 200, made.text
        added = await client.post(
            "/caconnector/remote", json={"type": "cfssl", "url": cfssl.url, "profile": "client"}
        )
        assert added.status_code == 200, added.text
        for ca in ("localca", "remote"):
            zone = await client.post(
                f"/caconnector/{ca}/templates/{ZONE}",
                json={"sans": {"email": ["owner"], "DNS": ["*.corp.example"]}},
            )
            assert zone.status_code == 200, zone.text
    user = await memory_stack.login("alice@corp", PASSWORD)
    return Bound(memory_stack, user, admin, ("localca", "remote"))


async def enroll(
    bound: Bound, as_admin: bool, request: str, ca: str, template: str = ""
) -> httpx.Response:
    """POST /token/init for alice, as herself or as the administrator."""
    body = {"type": "certificate", "request": request, "ca": ca}
    if template:
        body["template"] = template
    if as_admin:
        body.update(user="alice", realm="corp")
    token = bound.admin_token if as_admin else bound.user_token
    async with bound.stack.client(token) as client:
        return await client.post("/token/init", json=body)


async def token_count(stack: Stack) -> int:
    async with stack.db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(Token)) or 0)


def names_of(answer: httpx.Response) -> tuple[str, list[str]]:
    """The issued certificate's subject and SANs, asserting it was issued."""
    body = answer.json()
    assert answer.status_code == 200, body
    assert body["detail"]["rollout_state"] == "enrolled", body
    cert = x509.load_pem_x509_certificate(body["detail"]["certificate"].encode())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        texts = [f"{type(n).__name__}:{n.value}" for n in sans]
    except x509.ExtensionNotFound:
        texts = []
    return cert.subject.rfc4514_string(), texts


def refused(answer: httpx.Response, *words: str) -> str:
    """The 400's message, asserting it names the field and each of *words*."""
    body = answer.json()
    assert answer.status_code == 400, body
    message: str = body["result"]["error"]["message"]
    assert message.startswith("request: "), message
    for word in words:
        assert word in message, message
    return message


@pytest.mark.parametrize("as_admin", [False, True], ids=["user", "admin"])
async def test_a_foreign_subject_becomes_the_owners_name(bound: Bound, as_admin: bool) -> None:
    # localca certifies alice's own name; cfssl would copy O, so it is refused instead.
    local = await enroll(bound, as_admin, csr(FOREIGN_CN), "localca")
    assert names_of(local) == ("CN=alice", [f"RFC822Name:{ALICE_MAIL}"])
    for ca in bound.cas:
        answer = await enroll(bound, as_admin, csr(FOREIGN_SUBJECT), ca)
        if ca == "localca":
            assert names_of(answer) == ("CN=alice", [f"RFC822Name:{ALICE_MAIL}"])
        else:
            refused(answer, "O=Evil Corp", "copies")
    remote = await enroll(bound, as_admin, csr(FOREIGN_CN), "remote")
    assert names_of(remote) == ("CN=alice", [f"RFC822Name:{ALICE_MAIL}"])


@pytest.mark.parametrize("as_admin", [False, True], ids=["user", "admin"])
@pytest.mark.parametrize("template", ["", ZONE], ids=["default", "zone"])
async def test_foreign_sans_are_refused_before_anything_is_stored(
    bound: Bound, as_admin: bool, template: str
) -> None:
    before = await token_count(bound.stack)
    for ca in bound.cas:
        for name in FOREIGN_SANS:
            answer = await enroll(bound, as_admin, csr([], [name]), ca, template)
            refused(answer, "subjectAltName", name.value if isinstance(name.value, str) else "IP")
    assert await token_count(bound.stack) == before


@pytest.mark.parametrize("as_admin", [False, True], ids=["user", "admin"])
async def test_a_zone_template_certifies_names_in_the_zone_only(
    bound: Bound, as_admin: bool
) -> None:
    in_zone = [x509.DNSName("laptop.corp.example"), x509.RFC822Name(ALICE_MAIL)]
    for ca in bound.cas:
        answer = await enroll(bound, as_admin, csr([(NameOID.COMMON_NAME, "x")], in_zone), ca, ZONE)
        subject, sans = names_of(answer)
        assert subject == "CN=alice"
        assert sorted(sans) == sorted(
            [f"RFC822Name:{ALICE_MAIL}", "DNSName:laptop.corp.example"]
        ), ca
        # The default template allows no DNS name at all.
        default = await enroll(bound, as_admin, csr([], in_zone), ca)
        refused(default, "DNS:laptop.corp.example", "not allowed")


@pytest.mark.parametrize("as_admin", [False, True], ids=["user", "admin"])
async def test_control_characters_are_refused(bound: Bound, as_admin: bool) -> None:
    before = await token_count(bound.stack)
    for ca in bound.cas:
        for subject in CONTROL_SUBJECTS:
            refused(await enroll(bound, as_admin, csr(subject), ca), "control character")
        bad_dns = x509.DNSName("laptop\r\n.corp.example")
        refused(await enroll(bound, as_admin, csr([], [bad_dns]), ca, ZONE), "control character")
        invalid = x509.DNSName("-bad-.corp.example")
        refused(await enroll(bound, as_admin, csr([], [invalid]), ca, ZONE), "not a valid DNS")
    assert await token_count(bound.stack) == before


async def test_admins_may_keep_the_csr_subject_only_where_the_template_says(bound: Bound) -> None:
    async with bound.stack.client(bound.admin_token) as client:
        made = await client.post(
            "/caconnector/localca/templates/verbatim",
            json={"admin_csr_subject": True, "sans": {}},
        )
        assert made.status_code == 200, made.text
    service = [(NameOID.COMMON_NAME, "Alice Service"), (NameOID.ORGANIZATION_NAME, "Corp")]
    by_admin = await enroll(bound, True, csr(service), "localca", "verbatim")
    assert names_of(by_admin) == ("O=Corp,CN=Alice Service", [])
    by_user = await enroll(bound, False, csr(service), "localca", "verbatim")
    assert names_of(by_user) == ("CN=alice", [])
    # Still no control characters, even for an admin.
    control = await enroll(bound, True, csr(CONTROL_SUBJECTS[0]), "localca", "verbatim")
    refused(control, "control character")


async def test_a_refusing_template_refuses_a_foreign_subject(bound: Bound) -> None:
    async with bound.stack.client(bound.admin_token) as client:
        made = await client.post(
            "/caconnector/localca/templates/strict",
            json={"csr_subject": "refuse", "subject_components": ["realm"]},
        )
        assert made.status_code == 200, made.text
    refused(await enroll(bound, False, csr(FOREIGN_CN), "localca", "strict"), "csr_subject=refuse")
    own = [(NameOID.COMMON_NAME, "alice"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "corp")]
    answer = await enroll(bound, False, csr(own), "localca", "strict")
    assert names_of(answer) == ("OU=corp,CN=alice", [f"RFC822Name:{ALICE_MAIL}"])
    empty = await enroll(bound, False, csr([]), "localca", "strict")
    assert names_of(empty)[0] == "OU=corp,CN=alice"


async def test_the_job_carries_the_owner_the_api_decided_for(bound: Bound) -> None:
    answer = await enroll(bound, False, csr(FOREIGN_CN), "localca")
    serial = answer.json()["detail"]["serial"]
    async with bound.stack.db.read() as session:
        rows = (await session.scalars(select(OutboxMessage))).all()
    [job] = [r for r in rows if r.routing_key == "csr.sign" and serial in r.body]
    data = SignRequest.from_data(json.loads(job.body)["data"])
    assert data.owner == {"email": ALICE_MAIL, "givenname": "", "surname": ""}
    # A job of an older release carries none: the ca_worker reads the user store instead.
    older = dataclasses.replace(data, owner=None)
    assert await job_owner(bound.stack.db, older) == Owner("alice", "corp", ALICE_MAIL)
    assert await job_owner(bound.stack.db, data) == Owner("alice", "corp", ALICE_MAIL)


async def test_cfssl_certifies_the_owners_realm_in_its_own_order(bound: Bound) -> None:
    async with bound.stack.client(bound.admin_token) as client:
        made = await client.post(
            "/caconnector/remote/templates/withrealm", json={"subject_components": ["realm"]}
        )
        assert made.status_code == 200, made.text
    answer = await enroll(bound, False, csr([(NameOID.COMMON_NAME, "x")]), "remote", "withrealm")
    subject, sans = names_of(answer)
    assert sorted(subject.split(",")) == ["CN=alice", "OU=corp"]
    assert sans == [f"RFC822Name:{ALICE_MAIL}"]
