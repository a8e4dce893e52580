"""Running a contract case (its setup requests, the request it is about, its cleanup) against
privacyIDEA or certtoken over HTTP."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.contract.shape import key_paths, missing_or_mistyped, value_at
from tests.support.pki import make_csr, self_signed_pem
from tests.support.stack import ADMIN, ADMIN_PASSWORD, Stack

CASES = Path(__file__).parent / "cases"
# Values a contract holds as well as types, unless a case names its own.
DEFAULT_VALUES = ("result.status", "result.error.code")
# The privacyIDEA reference's realm and users (../shared/tools/privacyidea/pi_setup.sh), which
# certtoken's side creates before the cases run.
REALM, USER, OTHER_USER, CA = "benchrealm", "bench000", "bench001", "localca"
# The password a user logs in with: certtoken's stored one; on the reference, the PIN of a
# spass token that a case's reference-only steps enroll (its users have no passwords).
USER_PASSWORD = "contract-user-pass"


@dataclass
class Target:
    """A system answering privacyIDEA's API, and how to log in to it."""

    url: str
    username: str
    password: str
    system: str = "certtoken"
    verify: Any = True
    variables: dict[str, str] = field(default_factory=dict)


@dataclass
class Answer:
    """The status and JSON body of the request a case is about."""

    status: int
    body: Any


async def add_reference_users(stack: Stack) -> None:
    """The reference's realm and users, as far as a case uses them."""
    async with stack.client(await stack.admin_token()) as client:
        for user in (USER, OTHER_USER):
            body = {
                "user": user,
                "realm": REALM,
                "email": f"{user}@example.org",
                "password": USER_PASSWORD,
            }
            answer = await client.post("/user/", json=body)
            assert answer.status_code < 300, answer.text


def certtoken(stack: Stack) -> Target:
    """The running stack as a contract target."""
    return Target(stack.url, ADMIN, ADMIN_PASSWORD)


def case_files() -> list[Path]:
    """Every case file, in name order."""
    return sorted(CASES.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    """A case file's content."""
    case: dict[str, Any] = json.loads(path.read_text())
    return case


def fresh_variables() -> dict[str, str]:
    """The values a run substitutes for ``{name}`` in requests: new CSRs and names each run."""
    unique = secrets.token_hex(4)
    # A CA may refuse a second certificate for one subject (openssl ca's unique_subject).
    return {
        "realm": REALM,
        "user": USER,
        "other_user": OTHER_USER,
        "ca": CA,
        "csr": make_csr(f"{USER}-{unique}"),
        "certificate": self_signed_pem(f"{USER}-{unique}"),
        "unique": unique,
        "user_password": USER_PASSWORD,
    }


async def run_case(target: Target, case: Mapping[str, Any]) -> Answer:
    """Run *case* against *target*: its ``given`` steps, its ``request``, its ``cleanup``.

    A step with ``only`` runs only on that system (``privacyidea`` or ``certtoken``): the
    set-up one of them needs for a request both answer alike.
    """
    variables = {
        **fresh_variables(),
        "admin_user": target.username,
        "admin_password": target.password,
        **target.variables,
    }
    async with httpx.AsyncClient(base_url=target.url, timeout=60, verify=target.verify) as client:
        token = await _login(client, target)
        for step in _steps(case, "given", target):
            await _step(client, token, step, variables)
        try:
            response = await _send(client, token, case["request"], variables)
            _save(case["request"], response, variables)
            return Answer(response.status_code, _json(response))
        finally:
            for step in _steps(case, "cleanup", target):
                await _send(client, token, step, variables)


def _steps(case: Mapping[str, Any], part: str, target: Target) -> list[Mapping[str, Any]]:
    """The *part* steps of *case* that run on *target*."""
    return [step for step in case.get(part, []) if step.get("only", target.system) == target.system]


def expectation(case: Mapping[str, Any], answer: Answer) -> dict[str, Any]:
    """What a recorded *answer* makes a case expect: status, some values, the key paths."""
    values = {}
    for path in case.get("values", DEFAULT_VALUES):
        value = value_at(answer.body, path)
        if value is not None:
            values[path] = value
    keys = _shape(case, answer)
    # Where a value is null only for want of data (no next page), the case says so.
    for path in case.get("nullable", []):
        if path in keys:
            keys[path] = sorted({*keys[path], "null"})
    return {"status": answer.status, "values": values, "keys": keys}


def differences(case: Mapping[str, Any], answer: Answer) -> list[str]:
    """Where *answer* breaks the case's recorded expectation (extra keys are allowed)."""
    expected = case["expect"]
    problems = []
    if answer.status != expected["status"]:
        problems.append(f"status {answer.status}, expected {expected['status']}")
    for path, value in expected["values"].items():
        actual = value_at(answer.body, path)
        if actual != value or type(actual) is not type(value):
            problems.append(f"value of {path}: {actual!r}, expected {value!r}")
    return problems + missing_or_mistyped(expected["keys"], _shape(case, answer))


def _shape(case: Mapping[str, Any], answer: Answer) -> dict[str, list[str]]:
    """The key paths of *answer* as the case reads them (``named`` and ``ignore`` paths)."""
    return key_paths(answer.body, case.get("named", []), case.get("ignore", []))


async def _login(client: httpx.AsyncClient, target: Target) -> str:
    answer = await client.post(
        "/auth", data={"username": target.username, "password": target.password}
    )
    answer.raise_for_status()
    token: str = answer.json()["result"]["value"]["token"]
    return token


async def _step(
    client: httpx.AsyncClient, token: str, step: Mapping[str, Any], variables: dict[str, str]
) -> None:
    """A setup request: it must succeed; ``save`` keeps values of its answer for later ones."""
    response = await _send(client, token, step, variables)
    if response.status_code >= 400:
        raise AssertionError(
            f"setup {step['method']} {step['path']}: {response.status_code} {response.text}"
        )
    _save(step, response, variables)


def _save(request: Mapping[str, Any], response: httpx.Response, variables: dict[str, str]) -> None:
    """Keep the values of a successful answer that the request's ``save`` names."""
    if response.status_code < 400:
        for name, path in request.get("save", {}).items():
            variables[name] = str(value_at(response.json(), path))


async def _send(
    client: httpx.AsyncClient, token: str, request: Mapping[str, Any], variables: dict[str, str]
) -> httpx.Response:
    """One request of a case; ``auth`` is ``admin`` (the default), ``none`` or ``invalid``."""
    auth = request.get("auth", "admin")
    headers = {}
    if auth != "none":
        headers[request.get("header", "Authorization")] = token if auth == "admin" else "invalid"
    return await client.request(
        request["method"],
        _fill(request["path"], variables),
        params=_fill(request.get("params"), variables),
        data=_fill(request.get("form"), variables),
        headers=headers,
    )


def _fill(value: Any, variables: Mapping[str, str]) -> Any:
    """*value* with every ``{name}`` of *variables* replaced, in strings, lists and objects."""
    if isinstance(value, str):
        for name, text in variables.items():
            value = value.replace("{" + name + "}", text)
        return value
    if isinstance(value, list):
        return [_fill(item, variables) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, variables) for key, item in value.items()}
    return value


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
