"""A template's CSR policy over real HTTP: refused requests are 400 and store nothing."""

from __future__ import annotations

import asyncio
import base64
import textwrap
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from shared.db.models import CATemplate, OutboxMessage, Token
from tests.support.stack import Stack

STRICT = {
    "key_types": ["rsa", "ec"],
    "min_rsa_bits": 3072,
    "min_ec_bits": 384,
    "signature_hashes": ["sha256", "sha384"],
    "max_csr_bytes": 4096,
}
# Keys made once: key generation is not what these tests measure.
RSA_2048 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_P256 = ec.generate_private_key(ec.SECP256R1())
EC_P384 = ec.generate_private_key(ec.SECP384R1())


def csr_pem(key: Any, algorithm: Any = "sha256", sans: int = 0, cn: str = "alice") -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if sans:
        names = [x509.DNSName(f"host{i}.example.org") for i in range(sans)]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    hash_ = {"sha256": hashes.SHA256(), "sha512": hashes.SHA512(), "sha384": hashes.SHA384()}
    signed = builder.sign(key, None if algorithm is None else hash_[algorithm])
    return signed.public_bytes(serialization.Encoding.PEM).decode()


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def sha1_csr_pem() -> str:
    """A CSR self-signed with sha1WithRSAEncryption (cryptography no longer makes these)."""
    tbs = x509.load_pem_x509_csr(csr_pem(RSA_2048).encode()).tbs_certrequest_bytes
    signature = RSA_2048.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    identifier = _tlv(0x30, bytes.fromhex("06092a864886f70d010105") + b"\x05\x00")
    der = _tlv(0x30, tbs + identifier + _tlv(0x03, b"\x00" + signature))
    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}\n-----END CERTIFICATE REQUEST-----\n"


async def counts(stack: Stack) -> tuple[int, int]:
    async with stack.db.read() as session:
        tokens = await session.scalar(select(func.count()).select_from(Token))
        outbox = await session.scalar(select(func.count()).select_from(OutboxMessage))
    return tokens or 0, outbox or 0


def init_body(request: str, template: str | None = "strict") -> dict[str, Any]:
    body = {"type": "certificate", "request": request, "ca": "localca", "user": "alice"}
    if template:
        body["template"] = template
    return body


async def test_a_strict_template_refuses_each_violation_and_enrolls_a_compliant_csr(
    memory_stack: Stack,
) -> None:
    stack = memory_stack
    token = await stack.admin_token()
    async with stack.client(token) as client:
        user = await client.post("/user/", json={"user": "alice", "realm": "corp"})
        assert user.status_code == 200, user.text
        made = await client.post("/caconnector/localca/templates/strict", json=STRICT)
        assert made.status_code == 200, made.text
        assert made.json()["detail"]["options"]["min_rsa_bits"] == 3072
        listed = (await client.get("/caconnector/localca/templates")).json()["result"]["value"]
        assert listed["templates"]["default"]["key_types"] == ["rsa", "ec"]
        assert listed["templates"]["default"]["max_csr_bytes"] == 16384
        assert listed["templates"]["strict"]["signature_hashes"] == ["sha256", "sha384"]

        big = csr_pem(EC_P384, "sha384", sans=200)
        assert len(big.encode()) > 4096
        cases = [
            (csr_pem(RSA_2048), "strict", "requires RSA keys of at least 3072 bits (min_rsa_bits)"),
            (csr_pem(EC_P256), "strict", "requires EC keys of at least 384 bits (min_ec_bits)"),
            (
                csr_pem(ed25519.Ed25519PrivateKey.generate(), None),
                "strict",
                "does not allow ed25519 keys (key_types; allowed: rsa, ec)",
            ),
            (
                csr_pem(EC_P384, "sha512"),
                "strict",
                "does not allow sha512 signatures (signature_hashes; allowed: sha256, sha384)",
            ),
            (
                big,
                "strict",
                f"allows at most 4096 bytes (max_csr_bytes); this CSR has {len(big.strip())}",
            ),
            # The built-in default template has rules too: no EdDSA unless a template allows it.
            (
                csr_pem(ed25519.Ed25519PrivateKey.generate(), None),
                None,
                "template 'default' does not allow ed25519 keys (key_types",
            ),
        ]
        before = await counts(stack)
        for request, template, reason in cases:
            answer = await client.post("/token/init", json=init_body(request, template))
            assert answer.status_code == 400, (reason, answer.text)
            message = answer.json()["result"]["error"]["message"]
            assert message.startswith("request: template "), message
            assert reason in message, (reason, message)
        # A SHA-1 signature is refused before any template rule (OpenSSL does not verify it).
        sha1 = await client.post("/token/init", json=init_body(sha1_csr_pem()))
        assert sha1.status_code == 400, sha1.text
        assert sha1.json()["result"]["error"]["message"].startswith("request: ")
        assert await counts(stack) == before

        # Refused and compliant requests stored together: only the compliant one is kept.
        answers = await asyncio.gather(
            client.post("/token/init", json=init_body(csr_pem(RSA_2048))),
            client.post("/token/init", json=init_body(csr_pem(EC_P384, "sha384"))),
            client.post("/token/init", json=init_body(big)),
        )
        assert [a.status_code for a in answers] == [400, 200, 400], [a.text for a in answers]
        detail = answers[1].json()["detail"]
        assert detail["rollout_state"] == "enrolled", detail
        cert = x509.load_pem_x509_certificate(detail["certificate"].encode())
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        tokens, outbox = await counts(stack)
        assert tokens == before[0] + 1 and outbox > before[1]
        listed_tokens = (await client.get("/token/")).json()["result"]["value"]
        assert [t["serial"] for t in listed_tokens["tokens"]] == [detail["serial"]]


async def test_invalid_csr_options_are_400_naming_the_option(memory_stack: Stack) -> None:
    token = await memory_stack.admin_token()
    cases = [
        ({"key_types": ["rsa", "dsa"]}, "key_types: unknown key type dsa"),
        ({"key_types": []}, "key_types: "),
        ({"min_rsa_bits": 1024}, "min_rsa_bits: "),
        ({"min_ec_bits": 224}, "min_ec_bits: "),
        ({"signature_hashes": ["sha256", "sha1"]}, "signature_hashes: sha1 is not allowed"),
        ({"signature_hashes": ["md5"]}, "signature_hashes: md5 is not allowed"),
        ({"signature_hashes": ["sha256", "crc32"]}, "signature_hashes: unknown hash crc32"),
        ({"max_csr_bytes": 0}, "max_csr_bytes: "),
        ({"max_csr_bytes": 65537}, "max_csr_bytes: "),
    ]
    async with memory_stack.client(token) as client:
        for body, start in cases:
            answer = await client.post("/caconnector/localca/templates/t1", json=body)
            assert answer.status_code == 400, (body, answer.text)
            assert answer.json()["result"]["error"]["message"].startswith(start), answer.text
        form = await client.post(
            "/caconnector/localca/templates/t2",
            data={
                "key_types": "rsa, ed25519",
                "signature_hashes": "sha384",
                "min_rsa_bits": "4096",
            },
        )
        assert form.status_code == 200, form.text
        options = form.json()["detail"]["options"]
        assert options["key_types"] == ["rsa", "ed25519"]
        assert options["signature_hashes"] == ["sha384"]
        assert (options["min_rsa_bits"], options["min_ec_bits"]) == (4096, 256)
        bad_form = await client.post(
            "/caconnector/localca/templates/t3", data={"signature_hashes": "sha256,sha1"}
        )
        assert bad_form.status_code == 400
        listed = (await client.get("/caconnector/localca/templates")).json()["result"]["value"]
        assert set(listed["templates"]) == {"default", "t2"}


async def test_a_stored_template_that_no_longer_validates_refuses_requests(
    memory_stack: Stack,
) -> None:
    stack = memory_stack
    token = await stack.admin_token()
    async with stack.db.write() as session:
        # As if written before min_rsa_bits had a floor: the api must not skip the rules.
        session.add(CATemplate(ca="localca", name="legacy", options={"min_rsa_bits": 1024}))
    async with stack.client(token) as client:
        user = await client.post("/user/", json={"user": "alice", "realm": "corp"})
        assert user.status_code == 200, user.text
        before = await counts(stack)
        answer = await client.post("/token/init", json=init_body(csr_pem(EC_P384), "legacy"))
        assert answer.status_code == 400, answer.text
        message = answer.json()["result"]["error"]["message"]
        assert message.startswith("template: 'legacy' has invalid stored options: min_rsa_bits"), (
            message
        )
    assert await counts(stack) == before
