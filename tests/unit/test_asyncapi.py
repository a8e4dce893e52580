"""docs/asyncapi.yaml says what the code sends: names, routing keys and fields."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from services.ca_worker.connectors.base import Denied, Issued, Pending
from services.ca_worker.outcomes import outcome
from shared.domain import JOB_CSR_SIGN, EventType, RolloutState
from shared.jobs import SignRequest
from shared.messaging.topology import (
    CA_WORKER_QUEUE,
    CSR_SIGN,
    EVENTS_EXCHANGE,
    JOBS_EXCHANGE,
    NOTIFIER_QUEUE,
    event_routing_key,
)
from shared.token_events import init_event_data, token_event_data

DOC = yaml.safe_load((Path(__file__).parents[2] / "docs" / "asyncapi.yaml").read_text())
SCHEMAS: dict[str, Any] = DOC["components"]["schemas"]


def _channels() -> dict[str, dict[str, Any]]:
    return {c["address"]: c for c in DOC["channels"].values()}


EXPIRY = {
    EventType.CERTIFICATE_EXPIRING: "certificateExpiring",
    EventType.CA_EXPIRING: "caExpiring",
}


def test_every_event_type_has_a_channel_on_the_events_exchange() -> None:
    channels = _channels()
    for event_type in EventType:
        channel = channels[event_routing_key(event_type)]
        assert channel["bindings"]["amqp"]["exchange"]["name"] == EVENTS_EXCHANGE
    enum = DOC["components"]["messages"]["tokenEvent"]["payload"]["allOf"][1]
    assert set(enum["properties"]["type"]["enum"]) == {e.value for e in EventType} - set(EXPIRY)
    for event_type, name in EXPIRY.items():
        message = DOC["components"]["messages"][name]
        assert message["payload"]["allOf"][1]["properties"]["type"]["const"] == event_type
        key = event_routing_key(event_type)
        assert key in NOTIFIER_QUEUE.routing_keys
        assert f"binds {key}" in channels[key]["description"]
    assert CSR_SIGN in channels
    assert channels[CSR_SIGN]["bindings"]["amqp"]["exchange"]["name"] == JOBS_EXCHANGE
    assert CA_WORKER_QUEUE.name in channels[CSR_SIGN]["description"]
    assert "token.#" in channels["token.init"]["description"]
    assert NOTIFIER_QUEUE.routing_keys[0] == "token.#"
    assert DOC["components"]["messages"]["csrSign"]["name"] == JOB_CSR_SIGN


def test_job_fields_are_documented() -> None:
    job = SignRequest("CRT0000000A", "alice", "corp", "localca", "", "PEM")
    documented = SCHEMAS["signRequest"]
    assert set(job.to_data()) == set(documented["properties"])
    assert set(documented["required"]) == {f.name for f in dataclasses.fields(SignRequest)}


def test_event_fields_are_documented() -> None:
    job = SignRequest("CRT0000000A", "alice", "corp", "localca", "", "PEM")
    now = datetime.now(UTC)
    issued = Issued("CERT", "ab12", "CN=alice", now, now)
    documented = SCHEMAS["tokenEventData"]["properties"]
    states = SCHEMAS["tokenEventData"]["properties"]["rollout_state"]["enum"]
    assert set(states) == {s.value for s in RolloutState}
    for result in (issued, Pending("req-1"), Denied("no")):
        moved = outcome(RolloutState.SUBMITTED, job, result)
        assert moved.state is not None
        data = init_event_data(job, moved.state, moved.info, "CERT" if result is issued else "")
        assert set(data) <= set(documented), set(data) - set(documented)
        assert set(SCHEMAS["tokenEventData"]["required"]) <= set(data)


def test_ca_jobs_are_documented_on_the_ca_worker_queue() -> None:
    from shared.ca_jobs import Decision, Poll, Retirement
    from shared.messaging.topology import CA_JOBS

    channels = _channels()
    assert set(CA_JOBS) <= set(channels)
    assert set(CA_JOBS) <= set(CA_WORKER_QUEUE.routing_keys)
    for key in CA_JOBS:
        assert channels[key]["bindings"]["amqp"]["exchange"]["name"] == JOBS_EXCHANGE
    for kind, schema in ((Decision, "caDecision"), (Retirement, "caRetirement"), (Poll, "caPoll")):
        names = {f.name for f in dataclasses.fields(kind)}
        assert set(SCHEMAS[schema]["properties"]) == names
        assert set(SCHEMAS[schema]["required"]) == names


def test_later_event_fields_are_documented() -> None:
    from shared.db.models import Token

    token = Token(
        serial="CRT0000000A",
        tokentype="certificate",
        username="alice",
        realm="corp",
        ca="localca",
        template="",
        info={"request_id": "ab", "revocation_reason": "keyCompromise", "reason": "x"},
    )
    data = token_event_data(
        token,
        RolloutState.REVOKED,
        dict(token.info),
        certificate="C",
        previous="enrolled",
        admin="a",
    )
    documented = SCHEMAS["tokenEventData"]["properties"]
    assert set(data) <= set(documented), set(data) - set(documented)
    assert {"previous_rollout_state", "admin", "revocation_reason"} <= set(data)


def test_expiry_notice_fields_are_documented() -> None:
    from cryptography import x509

    from shared.db.models import Token
    from shared.expiry import ca_notice, certificate_notice
    from tests.support.pki import self_signed_pem

    now = datetime.now(UTC)
    token = Token(
        serial="CRT0000000A",
        tokentype="certificate",
        username="alice",
        realm="corp",
        ca="localca",
        template="",
    )
    info = {"certificate_serial": "ab", "certificate_not_after": now.isoformat()}
    data = certificate_notice(token, info, now, 7, now)
    documented = set(SCHEMAS["tokenEventData"]["properties"])
    documented |= set(SCHEMAS["expiryNoticeData"]["properties"])
    assert set(data) <= documented, set(data) - documented
    assert set(SCHEMAS["expiryNoticeData"]["required"]) <= set(data)

    cert = x509.load_pem_x509_certificate(self_signed_pem("Test CA").encode())
    data = ca_notice("localca", cert, 90, now)
    documented = set(SCHEMAS["caExpiringData"]["properties"])
    documented |= set(SCHEMAS["expiryNoticeData"]["properties"])
    assert set(data) == documented
