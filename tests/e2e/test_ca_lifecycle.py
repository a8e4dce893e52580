"""Approval, revocation, CRL and OCSP with api and ca_worker as separate processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_separate_processes import add_user, login, start_api, start_worker
from tests.support.pki import make_csr, openssl_verify
from tests.support.procs import Processes

pytestmark = pytest.mark.rabbitmq


def test_approve_revoke_and_check_with_openssl(processes: Processes, tmp_path: Path) -> None:
    url = start_api(processes)
    start_worker(processes)
    token = login(url)
    add_user(url, token)
    headers = {"Authorization": token}
    template = httpx.post(
        f"{url}/caconnector/localca/templates/managed",
        json={"approval": "required"},
        headers=headers,
    )
    assert template.status_code == 200, template.text
    answer = httpx.post(
        f"{url}/token/init",
        json={
            "request": make_csr("carol"),
            "ca": "localca",
            "user": "alice",
            "realm": "corp",
            "template": "managed",
        },
        headers=headers,
        timeout=30,
    )
    held = answer.json()["detail"]
    assert held["rollout_state"] == "pending", answer.text
    approved = httpx.post(
        f"{url}/ca/localca/requests/{held['request_id']}/approve", headers=headers, timeout=30
    )
    detail = approved.json()["detail"]
    assert detail["rollout_state"] == "enrolled", approved.text
    again = httpx.post(f"{url}/ca/localca/requests/{held['request_id']}/approve", headers=headers)
    assert again.status_code == 409

    cacert = tmp_path / "ca.pem"
    cacert.write_text(httpx.get(f"{url}/ca/localca/cacert").text)
    verified = openssl_verify(tmp_path, cacert.read_text(), detail["certificate"])
    assert verified.returncode == 0, verified.stderr
    cert = tmp_path / "cert.pem"
    cert.write_text(detail["certificate"])

    def ocsp() -> str:
        done = subprocess.run(
            [
                "openssl",
                "ocsp",
                "-issuer",
                str(cacert),
                "-cert",
                str(cert),
                "-url",
                f"{url}/ca/localca/ocsp",
                "-CAfile",
                str(cacert),
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert "Response verify OK" in done.stderr + done.stdout, done.stderr
        return done.stdout

    assert ": good" in ocsp()
    revoked = httpx.post(
        f"{url}/token/revoke",
        json={"serial": held["serial"], "reason": "keyCompromise"},
        headers=headers,
        timeout=30,
    )
    assert revoked.json()["detail"]["rollout_state"] == "revoked", revoked.text
    assert ": revoked" in ocsp()
    (tmp_path / "crl.pem").write_text(httpx.get(f"{url}/ca/localca/crl?format=pem").text)
    crl = subprocess.run(
        [
            "openssl",
            "crl",
            "-in",
            str(tmp_path / "crl.pem"),
            "-CAfile",
            str(cacert),
            "-noout",
            "-text",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "verify OK" in crl.stderr + crl.stdout, crl.stderr
    assert "Key Compromise" in crl.stdout
    # Deleting the revoked token and withdrawing a second, held one.
    second = httpx.post(
        f"{url}/token/init",
        json={
            "request": make_csr("dave"),
            "ca": "localca",
            "user": "alice",
            "realm": "corp",
            "template": "managed",
        },
        headers=headers,
        timeout=30,
    ).json()["detail"]
    assert second["rollout_state"] == "pending"
    for serial in (held["serial"], second["serial"]):
        gone = httpx.delete(f"{url}/token/{serial}", headers=headers, timeout=30)
        assert gone.json()["detail"]["deleted"] is True, gone.text
    left = httpx.get(f"{url}/token/", headers=headers).json()["result"]["value"]["count"]
    assert left == 0
    pending = httpx.get(f"{url}/ca/localca/requests?status=withdrawn", headers=headers).json()
    assert [r["serial"] for r in pending["result"]["value"]["requests"]] == [second["serial"]]
    assert processes.stop("api") == 0
    assert processes.stop("ca-worker") == 0
