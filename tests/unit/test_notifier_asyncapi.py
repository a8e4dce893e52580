"""docs/asyncapi.yaml documents the notifier's retry job as the code sends it."""

from __future__ import annotations

from pathlib import Path

import yaml

from shared.messaging.topology import JOBS_EXCHANGE, MAIL_RETRY, NOTIFIER_JOBS_QUEUE, WORK_QUEUES
from shared.notification.vocabulary import JOB_MAIL_RETRY

DOC = yaml.safe_load((Path(__file__).parents[2] / "docs" / "asyncapi.yaml").read_text())


def test_the_mail_retry_job_is_documented() -> None:
    [channel] = [c for c in DOC["channels"].values() if c["address"] == MAIL_RETRY]
    assert channel["bindings"]["amqp"]["exchange"]["name"] == JOBS_EXCHANGE
    assert NOTIFIER_JOBS_QUEUE.name in channel["description"]
    assert NOTIFIER_JOBS_QUEUE.routing_keys == (MAIL_RETRY,)
    assert NOTIFIER_JOBS_QUEUE in WORK_QUEUES
    message = DOC["components"]["messages"]["mailRetry"]
    assert message["payload"]["allOf"][1]["properties"]["type"]["const"] == JOB_MAIL_RETRY
    # The api sends {"delivery_id": <id>} (services/api/routers/events.py).
    assert DOC["components"]["schemas"]["mailRetry"]["required"] == ["delivery_id"]
