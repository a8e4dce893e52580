"""A privacyIDEA client's certificate-token flow, with the JWT in ``PI-Authorization`` only: the
same function runs against certtoken (the test) and the reference (``python -m``)."""

from __future__ import annotations

import argparse
import asyncio
import base64
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.contract.runner import CA, REALM, USER, Target, fresh_variables

HEADER = "PI-Authorization"


async def client_flow(target: Target) -> list[str]:
    """Run the flow against *target*; the steps done, in order (an assertion fails a step)."""
    variables = fresh_variables()
    done: list[str] = []
    async with httpx.AsyncClient(base_url=target.url, timeout=60, verify=target.verify) as client:
        login = _value(
            await client.post(
                "/auth", data={"username": target.username, "password": target.password}
            )
        )
        client.headers[HEADER] = login["token"]
        done.append("login")
        assert {"enrollCERTIFICATE", "revoke", "enable", "disable", "delete"} <= set(
            login["rights"]
        ), login["rights"]
        assert "tokens" in login["menus"], login["menus"]
        done.append("rights")
        connectors = _value(await client.get("/system/names/caconnector"))
        named = {connector["connectorname"]: connector for connector in connectors}
        assert isinstance(named[CA]["templates"], dict), named
        done.append("caconnectors")
        owner = {"type": "certificate", "user": USER, "realm": REALM}
        by_csr = await _enroll(client, {**owner, "ca": CA, "request": variables["csr"]})
        x509.load_pem_x509_certificate(by_csr["certificate"].encode())
        done.append("enroll csr")
        by_genkey = await _enroll(client, {**owner, "ca": CA, "genkey": "1"})
        done.append("enroll genkey")
        uploaded = await _enroll(client, {**owner, "certificate": variables["certificate"]})
        assert uploaded["certificate"].strip() == variables["certificate"].strip()
        done.append("enroll upload")
        token = await _token(client, by_genkey["serial"])
        assert token["rollout_state"] == "enrolled" and token["active"] is True, token
        certificate = x509.load_pem_x509_certificate(token["info"]["certificate"].encode())
        bundle = pkcs12.load_pkcs12(
            base64.b64decode(token["info"]["pkcs12"]),
            by_genkey["pkcs12_password"].encode(),
        )
        assert bundle.cert is not None and bundle.cert.certificate == certificate
        done.append("read token")
        serial = by_csr["serial"]
        for action, active in (("disable", False), ("enable", True)):
            assert _value(await client.post(f"/token/{action}", data={"serial": serial})) == 1
            assert (await _token(client, serial))["active"] is active
            done.append(action)
        assert _value(await client.post("/token/revoke", data={"serial": serial})) == 1
        revoked = await _token(client, serial)
        assert (revoked["revoked"], revoked["locked"], revoked["active"]) == (True, True, False)
        done.append("revoke")
        for made in (by_csr, by_genkey, uploaded):
            assert _value(await client.delete(f"/token/{made['serial']}")) == 1
        listed = _value(await client.get("/token/", params={"serial": serial}))
        assert listed["tokens"] == [], listed
        done.append("delete")
    return done


async def _enroll(client: httpx.AsyncClient, form: dict[str, str]) -> dict[str, Any]:
    """``POST /token/init``; its ``detail`` once the certificate is there."""
    answer = await client.post("/token/init", data=form)
    assert answer.status_code == 200, answer.text
    detail: dict[str, Any] = answer.json()["detail"]
    assert detail["rollout_state"] == "enrolled" and detail["certificate"], detail
    return detail


async def _token(client: httpx.AsyncClient, serial: str) -> dict[str, Any]:
    """One token, as ``GET /token/?serial=`` shows it."""
    tokens = _value(await client.get("/token/", params={"serial": serial}))["tokens"]
    assert len(tokens) == 1, tokens
    token: dict[str, Any] = tokens[0]
    return token


def _value(answer: httpx.Response) -> Any:
    """``result.value`` of a successful answer."""
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["result"]["status"] is True, body
    return body["result"]["value"]


def main() -> None:
    """Run the flow against a privacyIDEA (the reference by default)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:5151")
    parser.add_argument("--username", default="admin")
    parser.add_argument("--password", default="test")
    args = parser.parse_args()
    print(asyncio.run(client_flow(Target(args.url, args.username, args.password))))


if __name__ == "__main__":
    main()
