"""Exchange, queue and routing-key names: the one place they are spelled."""

from __future__ import annotations

from dataclasses import dataclass

JOBS_EXCHANGE = "certtoken.jobs"
EVENTS_EXCHANGE = "certtoken.events"

CSR_SIGN = "csr.sign"
# csr.sign jobs of genkey tokens: their own queue, so key generation never holds up a CSR.
CSR_GENKEY = "csr.genkey"
CA_APPROVE = "ca.approve"
CA_DENY = "ca.deny"
CA_REVOKE = "ca.revoke"
CA_DELETE = "ca.delete"
CA_POLL = "ca.poll"
CA_JOBS = (CA_APPROVE, CA_DENY, CA_REVOKE, CA_DELETE, CA_POLL)
MAIL_RETRY = "mail.retry"


@dataclass(frozen=True)
class QueueSpec:
    """A durable work queue, its bindings, and its retry and parking queues."""

    name: str
    exchange: str
    routing_keys: tuple[str, ...]

    @property
    def parking(self) -> str:
        """Where messages go after the last attempt, for an operator to inspect and replay."""
        return f"{self.name}.parking"

    def retry_queue(self, delay_ms: int) -> str:
        """The delay queue that holds a message *delay_ms* before it returns to this queue."""
        return f"{self.name}.retry.{delay_ms}"


CA_WORKER_QUEUE = QueueSpec("certtoken.ca_worker", JOBS_EXCHANGE, (CSR_SIGN, *CA_JOBS))
KEYGEN_QUEUE = QueueSpec("certtoken.ca_worker.keygen", JOBS_EXCHANGE, (CSR_GENKEY,))
# Expiry notices (shared.expiry): a token's certificate, or a CA's, nears its end.
CERTIFICATE_EXPIRING = "certificate.expiring"
CA_EXPIRING = "ca.expiring"
NOTIFIER_QUEUE = QueueSpec(
    "certtoken.notifier", EVENTS_EXCHANGE, ("token.#", CERTIFICATE_EXPIRING, CA_EXPIRING)
)
# An administrator's retry of a parked mail delivery.
NOTIFIER_JOBS_QUEUE = QueueSpec("certtoken.notifier.jobs", JOBS_EXCHANGE, (MAIL_RETRY,))

WORK_QUEUES = (CA_WORKER_QUEUE, KEYGEN_QUEUE, NOTIFIER_QUEUE, NOTIFIER_JOBS_QUEUE)
QUEUES_BY_SERVICE = {
    "ca_worker": CA_WORKER_QUEUE,
    "ca_worker_keygen": KEYGEN_QUEUE,
    "notifier": NOTIFIER_QUEUE,
    "notifier_jobs": NOTIFIER_JOBS_QUEUE,
}


def event_routing_key(event_type: str) -> str:
    """``token_init`` -> ``token.init``: privacyIDEA's event name as a topic key."""
    return event_type.replace("_", ".", 1)
