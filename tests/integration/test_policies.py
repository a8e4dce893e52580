"""Policies over real HTTP: CRUD and validation, and each action changing the same request.

These tests are about policy, not messaging: they run on the in-memory broker only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from sqlalchemy import func, select

from services.api.policies.spec import UNMATCHED_FIELDS
from services.ca_worker.ca_create import create_local_ca
from shared.attestation import AttestationMode
from shared.db.models import Policy, Token
from shared.db.session import Database
from tests.integration.test_enroll_modes import (
    UNRELATED,
    YUBIKEY_ATTESTATION,
    YUBIKEY_CSR,
    _trust_dir,
)
from tests.support.pki import make_csr
from tests.support.stack import Stack, prepare, running_stack, settings_for
from tests.unit.test_attestation import FIXTURES

PASSWORD = "Policy-Test-Pw-71c3"


@asynccontextmanager
async def _stack(
    tmp_path: Path, *, other_ca: bool = False, **overrides: Any
) -> AsyncIterator[Stack]:
    """The system on the memory broker; *other_ca* adds a second local CA ``otherca``."""
    settings = settings_for(tmp_path / "data", **overrides)
    await prepare(settings)
    if other_ca:
        db = Database(settings.resolved_database_url)
        try:
            await create_local_ca(settings, db, "otherca")
        finally:
            await db.dispose()
    async with running_stack(settings) as stack:
        yield stack


@asynccontextmanager
async def _admin(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with stack.client(await stack.admin_token()) as client:
        yield client


async def _users(client: httpx.AsyncClient, *logins: str) -> None:
    for login in logins:
        user, realm = login.split("@")
        body = {"user": user, "realm": realm, "password": PASSWORD}
        answer = await client.post("/user/", json=body)
        assert answer.status_code == 200, answer.text


async def _policy(client: httpx.AsyncClient, name: str, **body: Any) -> dict[str, Any]:
    answer = await client.post(f"/policy/{name}", json=body)
    assert answer.status_code == 200, answer.text
    value: dict[str, Any] = answer.json()["result"]["value"]
    return value


async def _init(
    client: httpx.AsyncClient, owner: str | None = "alice@corp", **fields: Any
) -> httpx.Response:
    body = {"type": "certificate", "request": make_csr("policy"), **fields}
    if owner:
        body["user"] = owner
    return await client.post("/token/init", json=body)


def _refused(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, answer.text
    message: str = answer.json()["result"]["error"]["message"]
    return message


def _enrolled(answer: httpx.Response) -> str:
    assert answer.status_code == 200, answer.text
    detail = answer.json()["detail"]
    assert detail["rollout_state"] == "enrolled", detail
    serial: str = detail["serial"]
    return serial


async def _token(stack: Stack, serial: str) -> Token:
    async with stack.db.read() as session:
        token = await session.get(Token, serial)
    assert token is not None
    return token


async def _count(stack: Stack, model: type[Any]) -> int:
    async with stack.db.read() as session:
        return await session.scalar(select(func.count()).select_from(model)) or 0


# --- CRUD and validation --------------------------------------------------------------------


async def test_policy_crud(tmp_path: Path) -> None:
    async with _stack(tmp_path) as stack, _admin(stack) as client:
        created = await client.post(
            "/policy/corp-enroll",
            json={
                "scope": "enroll",
                "action": "certificate_ca_connector=localca, max_token_per_user=3",
                "realm": "corp",
                "priority": 2,
            },
        )
        assert created.status_code == 200, created.text
        assert created.json()["detail"] == {"created": True}
        # privacyIDEA's answer: the policy's number under "setPolicy <name>".
        number = created.json()["result"]["value"]["setPolicy corp-enroll"]
        assert isinstance(number, int) and number > 0
        assert list(created.json()["result"]["value"]) == ["setPolicy corp-enroll"]
        # One policy is a one-element list; "enroll" is stored as privacyIDEA's "enrollment".
        assert (await client.get("/policy/corp-enroll")).json()["result"]["value"] == [
            {
                **UNMATCHED_FIELDS,
                "name": "corp-enroll",
                "scope": "enrollment",
                # Values as privacyIDEA shows them: the text after "=".
                "action": {"certificate_ca_connector": "localca", "max_token_per_user": "3"},
                "realm": ["corp"],
                "user": [],
                "adminrealm": [],
                "active": True,
                "priority": 2,
            }
        ]
        # Form-encoded, as privacyIDEA's clients send it.
        form = await client.post(
            "/policy/helpdesk",
            data={
                "scope": "admin",
                "action": "revoke, delete",
                "adminrealm": "helpdesk",
                "user": "*, -boss",
                "active": "false",
            },
        )
        assert form.status_code == 200, form.text
        [shown] = (await client.get("/policy/helpdesk")).json()["result"]["value"]
        assert shown["action"] == {"revoke": True, "delete": True}
        assert shown["user"] == ["*", "-boss"]
        assert shown["adminrealm"] == ["helpdesk"]
        assert shown["active"] is False

        listed = (await client.get("/policy/")).json()["result"]["value"]
        assert [p["name"] for p in listed] == ["corp-enroll", "helpdesk"]
        admins = (await client.get("/policy/", params={"scope": "admin"})).json()
        assert [p["name"] for p in admins["result"]["value"]] == ["helpdesk"]
        bad_scope = await client.get("/policy/", params={"scope": "nope"})
        assert _refused(bad_scope, 400).startswith("scope: unknown scope 'nope'")

        replaced = await client.post(
            "/policy/corp-enroll",
            json={"scope": "enrollment", "action": {"max_token_per_user": 5}},
        )
        assert replaced.json()["detail"] == {"created": False}
        assert replaced.json()["result"]["value"] == {"setPolicy corp-enroll": number}
        for scope in ("enrollment", "enroll"):
            listed = (await client.get("/policy/", params={"scope": scope})).json()
            assert [p["name"] for p in listed["result"]["value"]] == ["corp-enroll"]
        [shown] = (await client.get("/policy/corp-enroll")).json()["result"]["value"]
        assert (shown["action"], shown["realm"], shown["priority"]) == (
            {"max_token_per_user": "5"},
            [],
            1,
        )

        deleted = await client.delete("/policy/corp-enroll")
        assert deleted.status_code == 200 and deleted.json()["result"]["value"] == number
        assert _refused(await client.delete("/policy/corp-enroll"), 404).startswith("policy: ")
        gone = await client.get("/policy/corp-enroll")
        assert gone.status_code == 200 and gone.json()["result"]["value"] == []
        assert await _count(stack, Policy) == 1

        # Only admins manage policies.
        await _users(client, "alice@corp")
        async with stack.client(await stack.login("alice@corp", PASSWORD)) as alice:
            for answer in (
                await alice.get("/policy/"),
                await alice.post("/policy/mine", json={"scope": "user", "action": "revoke"}),
                await alice.delete("/policy/helpdesk"),
            ):
                assert _refused(answer, 403).startswith("this action needs the admin role")
        assert await _count(stack, Policy) == 1


async def test_invalid_policies_are_refused_and_change_nothing(tmp_path: Path) -> None:
    trust = _trust_dir(tmp_path)
    not_pem = tmp_path / "not-pem.txt"
    not_pem.write_text("hello")
    async with _stack(tmp_path) as stack, _admin(stack) as client:
        await _policy(client, "keep", scope="user", action="revoke", realm="corp")
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("-bad", {"scope": "user", "action": "revoke"}, "name: must match"),
            ("p", {"action": "revoke"}, "scope: required"),
            ("p", {"scope": "authentication", "action": "revoke"}, "scope: unknown scope"),
            ("p", {"scope": "enroll", "action": "revoke"}, "action: unknown action 'revoke' in"),
            ("p", {"scope": "enroll"}, "action: required"),
            ("p", {"scope": "enroll", "action": "max_token_per_user=0"}, "action: max_token_pe"),
            (
                "p",
                {"scope": "enroll", "action": "certificate_require_attestation=always"},
                "action: certificate_require_attestation must be one of ignore, verify,",
            ),
            (
                "p",
                {"scope": "enroll", "action": "certificate_request_subject_component=phone"},
                "action: certificate_request_subject_component must be among email, realm, givenname",
            ),
            (
                "p",
                {"scope": "enroll", "action": "certificate_ca_connector=nosuchca"},
                "action: certificate_ca_connector names no CA connector 'nosuchca'",
            ),
            (
                "p",
                {"scope": "enroll", "action": "certificate_template=nosuch"},
                "action: certificate_template names no template 'nosuch'",
            ),
            (
                "p",
                {"scope": "user", "action": f"certificate_trusted_Attestation_CA_path={trust}/x"},
                "action: certificate_trusted_Attestation_CA_path '",
            ),
            (
                "p",
                {"scope": "user", "action": f"certificate_trusted_Attestation_CA_path={not_pem}"},
                "action: certificate_trusted_Attestation_CA_path '",
            ),
            ("p", {"scope": "user", "action": "revoke", "priority": 0}, "priority: must be"),
            ("p", {"scope": "user", "action": "revoke", "active": "maybe"}, "active: must be"),
            ("p", {"scope": "user", "action": "revoke", "realm": "a b"}, "realm: 'a b' is not"),
            ("p", {"scope": "user", "action": "revoke", "adminrealm": "x"}, "adminrealm: only"),
            ("p", {"scope": "user", "action": "revoke", "client": "10.0.0.1"}, "client: not sup"),
            # Replacing an existing policy with bad input leaves it as it was.
            ("keep", {"scope": "user", "action": "revoke=perhaps"}, "action: revoke must be"),
        ]
        for name, body, message in cases:
            answer = await client.post(f"/policy/{name}", json=body)
            assert _refused(answer, 400).startswith(message), (name, body, answer.text)
        listed = (await client.get("/policy/")).json()["result"]["value"]
        assert [(p["name"], p["action"], p["realm"]) for p in listed] == [
            ("keep", {"revoke": True}, ["corp"])
        ]
        # A real trust store is accepted, as a directory and as a PEM file.
        for path in (trust, trust / "yubico.pem"):
            await _policy(
                client,
                "trust",
                scope="admin",
                action=f"certificate_trusted_Attestation_CA_path={path}",
            )


# --- enroll scope -----------------------------------------------------------------------------


async def test_certificate_ca_connector(tmp_path: Path) -> None:
    async with _stack(tmp_path, other_ca=True) as stack, _admin(stack) as client:
        await _users(client, "alice@corp", "bob@sales")
        # Without a policy the request must name a CA.
        assert _refused(await _init(client), 400).startswith("ca: required")
        await _policy(
            client,
            "corp-ca",
            scope="enroll",
            action="certificate_ca_connector=otherca",
            realm="corp",
        )
        filled = _enrolled(await _init(client))
        token = await _token(stack, filled)
        assert token.ca == "otherca"
        issuer = x509.load_pem_x509_certificate(token.certificate.encode()).issuer
        assert "otherca" in issuer.rfc4514_string()
        assert (await _token(stack, _enrolled(await _init(client, ca="otherca")))).ca == "otherca"
        before = await _count(stack, Token)
        refused = await _init(client, ca="localca")
        assert _refused(refused, 400) == (
            "ca: policy certificate_ca_connector fixes the CA connector to 'otherca'; "
            "the request asked for 'localca'"
        )
        assert await _count(stack, Token) == before
        # Another realm: the policy does not apply.
        assert (
            await _token(stack, _enrolled(await _init(client, "bob@sales", ca="localca")))
        ).ca == ("localca")


async def test_certificate_template(tmp_path: Path) -> None:
    async with _stack(tmp_path) as stack, _admin(stack) as client:
        await _users(client, "alice@corp")
        made = await client.post("/caconnector/localca/templates/short", json={"validity_days": 7})
        assert made.status_code == 200, made.text
        long_cert = await _token(stack, _enrolled(await _init(client, ca="localca")))
        await _policy(client, "short", scope="enroll", action="certificate_template=short")
        token = await _token(stack, _enrolled(await _init(client, ca="localca")))
        assert token.template == "short"
        for cert, days in ((long_cert, 365), (token, 7)):
            parsed = x509.load_pem_x509_certificate(cert.certificate.encode())
            lifetime = parsed.not_valid_after_utc - parsed.not_valid_before_utc
            assert abs(lifetime.days - days) <= 1, (cert.template, lifetime)
        refused = await _init(client, ca="localca", template="default")
        assert _refused(refused, 400) == (
            "template: policy certificate_template fixes the template to 'short'; "
            "the request asked for 'default'"
        )


YUBIKEY_LEAF = (FIXTURES / "yubikey-slot9a-attestation.pem").read_text()


async def test_certificate_require_attestation(tmp_path: Path) -> None:
    trust = _trust_dir(tmp_path)
    # The server default is "ignore" with a trust store; the policy changes the mode.
    async with _stack(tmp_path, attestation_ca_path=trust) as stack, _admin(stack) as client:
        await _users(client, "alice@corp")
        csr = {"request": YUBIKEY_CSR, "ca": "localca"}
        assert _enrolled(await _init(client, **csr, attestation=UNRELATED))
        for mode in AttestationMode:
            await _policy(
                client, "attest", scope="enroll", action=f"certificate_require_attestation={mode}"
            )
            good = await _init(client, **csr, attestation=YUBIKEY_ATTESTATION)
            info = (await _token(stack, _enrolled(good))).info
            assert info["attestation_verified"] is (mode != AttestationMode.IGNORE), mode
            missing = await _init(client, **csr)
            wrong = await _init(client, **csr, attestation=UNRELATED)
            # The leaf without its intermediate: no path to the trusted Yubico root.
            untrusted = await _init(client, **csr, attestation=YUBIKEY_LEAF)
            if mode == AttestationMode.IGNORE:
                _enrolled(missing)
                _enrolled(wrong)
                _enrolled(untrusted)
                continue
            assert _refused(wrong, 400).startswith("attestation: key mismatch")
            assert _refused(untrusted, 400).startswith("attestation: untrusted chain")
            if mode == AttestationMode.VERIFY:
                _enrolled(missing)
            else:
                assert _refused(missing, 400).startswith("attestation: missing")


async def test_certificate_trusted_attestation_ca_path_by_role(tmp_path: Path) -> None:
    trust = _trust_dir(tmp_path)
    # A trust store without the Yubico root: the attestation leads nowhere trusted.
    elsewhere = tmp_path / "other-cas"
    elsewhere.mkdir()
    (elsewhere / "test.pem").write_text((trust / "test.pem").read_text())
    async with _stack(tmp_path) as stack, _admin(stack) as client:
        await _users(client, "alice@corp")
        await _policy(
            client,
            "attest",
            scope="enroll",
            action="certificate_require_attestation=require_and_verify",
        )
        await _policy(
            client,
            "corp-users",
            scope="user",
            action=f"enrollCERTIFICATE, certificate_trusted_Attestation_CA_path={trust}",
            realm="corp",
        )
        csr = {"request": YUBIKEY_CSR, "ca": "localca", "attestation": YUBIKEY_ATTESTATION}
        async with stack.client(await stack.login("alice@corp", PASSWORD)) as alice:
            serial = _enrolled(await _init(alice, None, **csr))
            assert (await _token(stack, serial)).info["attestation_verified"] is True
        # The user policy's trust store is not the admin's: the admin has none.
        assert _refused(await _init(client, **csr), 400) == (
            "attestation: untrusted chain: no trusted attestation CA is configured"
        )
        admin_policy = "enrollCERTIFICATE, certificate_trusted_Attestation_CA_path="
        await _policy(client, "admins", scope="admin", action=admin_policy + str(elsewhere))
        assert _refused(await _init(client, **csr), 400).startswith("attestation: untrusted chain")
        await _policy(client, "admins", scope="admin", action=admin_policy + str(trust))
        _enrolled(await _init(client, **csr))


async def test_max_token_per_user(tmp_path: Path) -> None:
    async with _stack(tmp_path) as stack, _admin(stack) as client:
        await _users(client, "alice@corp", "bob@corp")
        await _policy(client, "two", scope="enroll", action="max_token_per_user=2", realm="corp")
        first = _enrolled(await _init(client, ca="localca"))
        _enrolled(await _init(client, ca="localca"))
        third = await _init(client, ca="localca")
        assert _refused(third, 403) == (
            "max_token_per_user: user alice@corp has 2 tokens, the policy allows 2"
        )
        # A revoked token still counts toward max_token_per_user.
        revoked = await client.post("/token/revoke", json={"serial": first})
        assert revoked.status_code == 200, revoked.text
        assert _refused(await _init(client, ca="localca"), 403).startswith("max_token_per_user:")
        # The limit is per user.
        _enrolled(await _init(client, "bob@corp", ca="localca"))
        assert await _count(stack, Token) == 3


async def test_max_active_token_per_user(tmp_path: Path) -> None:
    async with _stack(tmp_path) as stack, _admin(stack) as client:
        await _users(client, "alice@corp")
        await _policy(client, "one", scope="enroll", action="max_active_token_per_user=1")
        first = _enrolled(await _init(client, ca="localca"))
        assert _refused(await _init(client, ca="localca"), 403) == (
            "max_active_token_per_user: user alice@corp has 1 active tokens, the policy allows 1"
        )
        revoked = await client.post("/token/revoke", json={"serial": first})
        assert revoked.status_code == 200, revoked.text
        second = _enrolled(await _init(client, ca="localca"))
        assert _refused(await _init(client, ca="localca"), 403).startswith(
            "max_active_token_per_user:"
        )
        # A disabled token is not active (privacyIDEA): it frees a place, and enabling it
        # again while another takes that place is refused, as privacyIDEA refuses it.
        disabled = await client.post("/token/disable", json={"serial": second})
        assert disabled.status_code == 200, disabled.text
        third = _enrolled(await _init(client, ca="localca"))
        enabled = await client.post("/token/enable", json={"serial": second})
        assert enabled.status_code == 403, enabled.text
        assert enabled.json()["result"]["error"]["code"] == 303
        assert enabled.json()["result"]["error"]["message"] == (
            "max_active_token_per_user: user alice@corp has 1 active tokens, the policy allows 1"
        )
        await client.post("/token/disable", json={"serial": third})
        enabled = await client.post("/token/enable", json={"serial": second})
        assert enabled.status_code == 200, enabled.text
        assert await _count(stack, Token) == 3


async def test_realm_user_matching_and_priority(tmp_path: Path) -> None:
    async with _stack(tmp_path, other_ca=True) as stack, _admin(stack) as client:
        await _users(client, "alice@corp", "bob@corp", "carol@sales")
        action = "certificate_ca_connector="
        await _policy(
            client, "corp", scope="enroll", action=action + "localca", realm="corp", priority=5
        )
        await _policy(
            client, "alice", scope="enroll", action=action + "otherca", user="alice", priority=2
        )
        await _policy(
            client, "off", scope="enroll", action=action + "localca", user="alice", active=False
        )

        async def ca_of(owner: str) -> str:
            return (await _token(stack, _enrolled(await _init(client, owner)))).ca

        assert await ca_of("alice@corp") == "otherca"
        assert await ca_of("bob@corp") == "localca"
        assert _refused(await _init(client, "carol@sales"), 400).startswith("ca: required")

        # Everyone but bob, at alice's priority with another value: a conflict for alice.
        await _policy(
            client,
            "all-but-bob",
            scope="enroll",
            action=action + "localca",
            user="*,-bob",
            priority=2,
        )
        before = await _count(stack, Token)
        assert _refused(await _init(client, "alice@corp"), 403) == (
            "policy: conflicting values for certificate_ca_connector in policies "
            "alice (otherca), all-but-bob (localca) at priority 2"
        )
        assert await ca_of("bob@corp") == "localca"
        assert await ca_of("carol@sales") == "localca"
        assert await _count(stack, Token) == before + 2
        # A better priority settles it.
        await _policy(
            client, "alice", scope="enroll", action=action + "otherca", user="alice", priority=1
        )
        assert await ca_of("alice@corp") == "otherca"


# --- user and admin scope: the role's actions -------------------------------------------------


async def test_user_role_actions(tmp_path: Path) -> None:
    async with _stack(tmp_path) as stack, _admin(stack) as client:
        await _users(client, "alice@corp")
        async with stack.client(await stack.login("alice@corp", PASSWORD)) as alice:
            # No user policy: alice may enroll for herself, but neither revoke nor delete.
            serial = _enrolled(await _init(alice, None, ca="localca"))
            assert _refused(await alice.post("/token/revoke", json={"serial": serial}), 403) == (
                "revoke: no user policy allows user alice@corp to revoke tokens"
            )
            assert _refused(await alice.delete(f"/token/{serial}"), 403) == (
                "delete: no user policy allows user alice@corp to delete tokens"
            )
            assert (await _token(stack, serial)).rollout_state == "enrolled"

            await _policy(client, "own", scope="user", action="revoke", realm="corp")
            revoked = await alice.post("/token/revoke", json={"serial": serial})
            assert revoked.status_code == 200, revoked.text
            assert (await _token(stack, serial)).rollout_state == "revoked"
            # A user policy exists for her realm now: enrolling needs a grant too.
            assert _refused(await _init(alice, None, ca="localca"), 403) == (
                "enrollCERTIFICATE: no user policy allows user alice@corp to enroll "
                "certificate tokens"
            )
            assert _refused(await alice.delete(f"/token/{serial}"), 403).startswith("delete: ")

            await _policy(client, "own", scope="user", action="revoke, delete, enrollCERTIFICATE")
            _enrolled(await _init(alice, None, ca="localca"))
            deleted = await alice.delete(f"/token/{serial}")
            assert deleted.status_code == 200, deleted.text


async def test_admin_policies_restrict_admins(tmp_path: Path) -> None:
    async with _stack(tmp_path) as stack, _admin(stack) as client:
        await _users(client, "alice@corp", "bob@sales")
        serial = _enrolled(await _init(client, ca="localca"))
        await _policy(
            client, "corp-enrollers", scope="admin", action="enrollCERTIFICATE", realm="corp"
        )
        _enrolled(await _init(client, ca="localca"))
        assert _refused(await _init(client, "bob@sales", ca="localca"), 403) == (
            "enrollCERTIFICATE: no admin policy allows admin admin to enroll certificate tokens "
            "of user bob@sales"
        )
        assert _refused(await client.post("/token/revoke", json={"serial": serial}), 403) == (
            "revoke: no admin policy allows admin admin to revoke tokens of user alice@corp"
        )
        # Disabled, the admin policy restricts nobody again.
        await _policy(
            client, "corp-enrollers", scope="admin", action="enrollCERTIFICATE", active=False
        )
        revoked = await client.post("/token/revoke", json={"serial": serial})
        assert revoked.status_code == 200, revoked.text


async def test_adminrealm_with_a_superuser_realm_admin(tmp_path: Path) -> None:
    async with _stack(tmp_path, superuser_realms=["helpdesk"]) as stack, _admin(stack) as client:
        await _users(client, "alice@corp", "carol@helpdesk")
        async with stack.client() as anonymous:
            login = await anonymous.post(
                "/auth", json={"username": "carol@helpdesk", "password": PASSWORD}
            )
        value = login.json()["result"]["value"]
        assert (value["role"], value["username"], value["realm"]) == ("admin", "carol", "helpdesk")
        alices = (await stack.login("alice@corp", PASSWORD), "alice")
        async with stack.client(alices[0]) as alice:
            assert (await alice.get("/user/")).status_code == 403

        await _policy(
            client,
            "helpdesk",
            scope="admin",
            action="enrollCERTIFICATE, revoke",
            adminrealm="helpdesk",
            realm="corp",
        )
        async with stack.client(value["token"]) as carol:
            assert (await carol.get("/user/")).status_code == 200
            serial = _enrolled(await _init(carol, ca="localca"))
            assert (await _token(stack, serial)).info["enrolled_by"] == "admin:carol"
            assert _refused(await carol.delete(f"/token/{serial}"), 403) == (
                "delete: no admin policy allows admin carol@helpdesk to delete tokens "
                "of user alice@corp"
            )
            revoked = await carol.post("/token/revoke", json={"serial": serial})
            assert revoked.status_code == 200, revoked.text
        # The internal admin has no admin realm: the helpdesk policy does not match them.
        assert _refused(await _init(client, ca="localca"), 403).startswith(
            "enrollCERTIFICATE: no admin policy allows admin admin"
        )
        # Policies themselves stay manageable by admins.
        deleted = await client.delete("/policy/helpdesk")
        assert deleted.status_code == 200
        _enrolled(await _init(client, ca="localca"))


async def test_another_process_sees_policy_changes(tmp_path: Path) -> None:
    """A policy written by another api process (another database handle) takes effect."""
    async with _stack(tmp_path) as stack, _admin(stack) as client:
        await _users(client, "alice@corp")
        _enrolled(await _init(client, ca="localca"))  # fills this process's cache
        other = Database(stack.settings.resolved_database_url)
        try:
            async with other.write() as session:
                # Under "enroll", the scope's name before privacyIDEA's "enrollment": still read.
                session.add(
                    Policy(name="elsewhere", scope="enroll", action={"max_token_per_user": 1})
                )
        finally:
            await other.dispose()
        for _ in range(100):
            answer = await _init(client, ca="localca")
            if answer.status_code == 403:
                break
            _enrolled(answer)
            await asyncio.sleep(0.1)
        assert _refused(answer, 403).startswith("max_token_per_user: user alice@corp has")
