"""The in-process broker for the embedded mode: RabbitMQ's semantics, held in memory."""

from __future__ import annotations

import asyncio
import collections
import copy
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from shared.logs import correlation_id
from shared.messaging.base import Broker, Consumer, Handler, Message, Unroutable
from shared.messaging.routing import (
    REQUEUE_PAUSE,
    failure_route,
    incoming_message,
    log_route,
    outgoing_headers,
    parked_summary,
    replay_headers,
    topic_matches,
    validate_policy,
)
from shared.messaging.topology import EVENTS_EXCHANGE, JOBS_EXCHANGE, WORK_QUEUES, QueueSpec

log = logging.getLogger(__name__)

EXCHANGES = {JOBS_EXCHANGE: "direct", EVENTS_EXCHANGE: "topic"}


@dataclass(frozen=True)
class _Envelope:
    """A message as a queue holds it: body, properties, and how it was routed."""

    body: bytes
    message_id: str
    type: str
    correlation_id: str
    headers: dict[str, Any]
    exchange: str
    routing_key: str
    redelivered: bool = False

    def copy(self) -> _Envelope:
        """An independent copy, so that no two queues or deliveries share headers."""
        return replace(self, headers=copy.deepcopy(self.headers))

    def to_message(self) -> Message:
        """The handler's view of this delivery."""
        return incoming_message(
            self.body,
            message_id=self.message_id,
            type=self.type,
            correlation_id=self.correlation_id,
            headers=self.headers,
            routing_key=self.routing_key,
            redelivered=self.redelivered,
        )


class _Queue:
    """A FIFO of envelopes that consumers wait on; with a TTL, a delay queue that dead-letters."""

    def __init__(self, name: str, ttl_ms: int | None = None, dead_letter_to: str = "") -> None:
        self.name = name
        self.ttl_ms = ttl_ms
        self.dead_letter_to = dead_letter_to
        self.ready: collections.deque[_Envelope] = collections.deque()
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()

    def put(self, envelope: _Envelope, *, front: bool = False) -> None:
        """Add *envelope* at the tail, or at the head when it is being requeued."""
        if front:
            self.ready.appendleft(envelope)
        else:
            self.ready.append(envelope)
        self._wake_one()

    async def get(self) -> _Envelope:
        """Take the oldest envelope, waiting for one."""
        while not self.ready:
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # Woken and cancelled at once: hand the wake-up to the next getter.
                if waiter.done() and not waiter.cancelled() and self.ready:
                    self._wake_one()
                raise
        return self.ready.popleft()

    def _wake_one(self) -> None:
        while self._getters:
            waiter = self._getters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class MemoryBroker(Broker):
    """The in-process broker of ``certtoken run``: exchanges, bindings, retries and parking.

    Limit of the embedded mode: everything lives in this process's memory. A message whose
    handler has not returned when ``close()`` is called stays in its queue, and messages waiting
    in a queue, a retry delay or a parking queue are lost when the process exits.
    """

    def __init__(
        self,
        *,
        prefetch: int = 64,
        retry_delays_ms: Sequence[int] = (1000, 5000, 30000, 120000),
        max_attempts: int = 6,
        queues: Sequence[QueueSpec] = WORK_QUEUES,
        connection_name: str = "certtoken",
    ) -> None:
        validate_policy(prefetch, retry_delays_ms, max_attempts)
        self.prefetch = prefetch
        self.retry_delays_ms = tuple(retry_delays_ms)
        self.max_attempts = max_attempts
        self._specs = tuple(queues)
        self._connection_name = connection_name
        self._queues: dict[str, _Queue] = {}
        self._bindings: dict[str, list[tuple[str, str]]] = {name: [] for name in EXCHANGES}
        self._timers: set[asyncio.TimerHandle] = set()
        self._consumers: set[MemoryConsumer] = set()
        self._running = False

    async def start(self) -> None:
        """Declare the topology."""
        for spec in self._specs:
            self._declare(spec)
        self._running = True

    async def close(self, drain_timeout: float = 10.0) -> None:
        """Stop consumers (draining up to *drain_timeout*); pending retry delays are dropped."""
        await asyncio.gather(
            *(c.stop(drain_timeout) for c in list(self._consumers)), return_exceptions=True
        )
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._running = False

    async def publish(self, exchange: str, routing_key: str, message: Message) -> None:
        """Route a copy of *message* to every matching queue; Unroutable when there is none."""
        self._check_running()
        envelope = _Envelope(
            body=bytes(message.body),
            # RabbitMQ's client names an anonymous message too.
            message_id=message.message_id or uuid.uuid4().hex,
            type=message.type,
            correlation_id=message.correlation_id,
            headers=outgoing_headers(message),
            exchange=exchange,
            routing_key=routing_key,
        )
        self._route(envelope)

    async def consume(
        self, queue: QueueSpec, handler: Handler, *, prefetch: int | None = None
    ) -> Consumer:
        """Feed *queue* to *handler*, up to prefetch at once; retry or park on failure."""
        self._check_running()
        self._declare(queue)
        consumer = MemoryConsumer(self, self._queues[queue.name], handler, queue, prefetch=prefetch)
        self._consumers.add(consumer)
        return consumer

    async def subscribe(self, exchange: str, pattern: str, handler: Handler) -> Consumer:
        """A private queue bound by *pattern*, removed when the subscription stops."""
        self._check_running()
        bindings = self._exchange_bindings(exchange)
        name = f"{self._connection_name}.subscriber.{uuid.uuid4().hex}"
        self._queues[name] = _Queue(name)
        binding = (pattern, name)
        bindings.append(binding)

        def remove() -> None:
            bindings.remove(binding)
            del self._queues[name]

        consumer = MemoryConsumer(self, self._queues[name], handler, None, on_stop=remove)
        self._consumers.add(consumer)
        return consumer

    async def ping(self) -> bool:
        """Whether the broker is started and not closed."""
        return self._running

    async def queue_depth(self, queue: str) -> int:
        """Messages ready in *queue*; LookupError when it does not exist."""
        return len(self._queue(queue).ready)

    async def peek_parked(self, queue_spec: QueueSpec, limit: int = 20) -> list[dict[str, Any]]:
        """Describe up to *limit* parked messages, leaving them parked."""
        parked = list(self._queue(queue_spec.parking).ready)[:limit]
        return [parked_summary(envelope.to_message()) for envelope in parked]

    async def replay_parked(self, queue_spec: QueueSpec, limit: int | None = None) -> int:
        """Move parked messages back to their queue with attempts reset; return how many."""
        self._check_running()
        self._declare(queue_spec)
        parking = self._queue(queue_spec.parking)
        count = len(parking.ready) if limit is None else min(limit, len(parking.ready))
        for _ in range(count):
            message = parking.ready.popleft().to_message()
            self._send_copy(queue_spec.name, message, replay_headers(message))
        if count:
            log.info("replayed parked messages", extra={"queue": queue_spec.name, "count": count})
        return count

    def _send_copy(self, queue: str, message: Message, headers: dict[str, Any]) -> None:
        """Put a copy of *message* straight into *queue*, as the default exchange would."""
        self._route(
            _Envelope(
                body=message.body,
                message_id=message.message_id,
                type=message.type,
                correlation_id=message.correlation_id,
                headers=copy.deepcopy(headers),
                exchange="",
                routing_key=queue,
            )
        )

    def _forget(self, consumer: MemoryConsumer) -> None:
        """Drop a stopped consumer from the set that close() stops."""
        self._consumers.discard(consumer)

    def _route(self, envelope: _Envelope) -> None:
        if envelope.exchange == "":
            names = [envelope.routing_key] if envelope.routing_key in self._queues else []
        else:
            bindings = self._exchange_bindings(envelope.exchange)
            direct = EXCHANGES[envelope.exchange] == "direct"
            names = []
            for pattern, name in bindings:
                matched = (
                    pattern == envelope.routing_key
                    if direct
                    else topic_matches(pattern, envelope.routing_key)
                )
                if matched and name not in names:
                    names.append(name)
        if not names:
            raise Unroutable(
                f"no queue for {envelope.routing_key!r} on {envelope.exchange or '(default)'!r}"
            )
        for name in names:
            self._enqueue(self._queues[name], envelope.copy())

    def _enqueue(self, queue: _Queue, envelope: _Envelope) -> None:
        queue.put(envelope)
        if queue.ttl_ms is None:
            return
        timer: asyncio.TimerHandle

        def expire() -> None:
            self._timers.discard(timer)
            self._dead_letter(queue)

        timer = asyncio.get_running_loop().call_later(queue.ttl_ms / 1000, expire)
        self._timers.add(timer)

    def _dead_letter(self, queue: _Queue) -> None:
        """The oldest message's TTL ended (one TTL per queue): send it on, as RabbitMQ does."""
        if not queue.ready:
            return
        envelope = replace(queue.ready.popleft(), exchange="", routing_key=queue.dead_letter_to)
        try:
            self._route(envelope)
        except Unroutable:
            log.error(
                "dead-letter target missing; message dropped",
                extra={"message_id": envelope.message_id, "queue": queue.name},
            )

    def _declare(self, spec: QueueSpec) -> None:
        """Create *spec*'s queue, bindings, parking queue and delay queues (idempotent)."""
        bindings = self._exchange_bindings(spec.exchange)
        for name in (spec.name, spec.parking):
            self._queues.setdefault(name, _Queue(name))
        for delay in sorted(set(self.retry_delays_ms)):
            name = spec.retry_queue(delay)
            self._queues.setdefault(name, _Queue(name, ttl_ms=delay, dead_letter_to=spec.name))
        for key in spec.routing_keys:
            if (key, spec.name) not in bindings:
                bindings.append((key, spec.name))

    def _exchange_bindings(self, exchange: str) -> list[tuple[str, str]]:
        try:
            return self._bindings[exchange]
        except KeyError:
            raise ValueError(f"unknown exchange {exchange!r}") from None

    def _queue(self, name: str) -> _Queue:
        try:
            return self._queues[name]
        except KeyError:
            raise LookupError(f"no queue {name!r}") from None

    def _check_running(self) -> None:
        if not self._running:
            raise RuntimeError("broker not started")


class MemoryConsumer(Consumer):
    """Takes envelopes from one queue while fewer than prefetch are in hand (a subscriber: all)."""

    def __init__(
        self,
        broker: MemoryBroker,
        queue: _Queue,
        handler: Handler,
        spec: QueueSpec | None,
        on_stop: Callable[[], None] | None = None,
        prefetch: int | None = None,
    ) -> None:
        self._broker = broker
        self._queue = queue
        self._handler = handler
        self._spec = spec
        self._on_stop = on_stop
        # A subscription takes every event at once, as RabbitMQ delivers one without acks.
        self._slots = asyncio.Semaphore(prefetch or broker.prefetch) if spec is not None else None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._pump = asyncio.create_task(self._run(), name=f"consume {queue.name}")

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Take no more messages; wait for handlers in hand, then requeue the unfinished."""
        if self._stopped:
            return
        self._stopped = True
        self._broker._forget(self)
        self._pump.cancel()
        await asyncio.wait([self._pump])
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=drain_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._on_stop is not None:
            self._on_stop()

    async def _run(self) -> None:
        while True:
            if self._slots is not None:
                await self._slots.acquire()
            try:
                envelope = await self._queue.get()
            except BaseException:
                self._release()
                raise
            task = asyncio.create_task(self._process(envelope))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _process(self, envelope: _Envelope) -> None:
        try:
            settled = await self._handle(envelope)
        except asyncio.CancelledError:
            # Not acked: the message goes back to the head of its queue, as on a closed channel.
            self._queue.put(replace(envelope, redelivered=True), front=True)
            raise
        finally:
            self._release()
        if not settled:
            self._queue.put(replace(envelope, redelivered=True), front=True)

    def _release(self) -> None:
        if self._slots is not None:
            self._slots.release()

    async def _handle(self, envelope: _Envelope) -> bool:
        """Run the handler; True once the message is acked, False when it must be requeued."""
        message = envelope.to_message()
        correlation_id.set(message.correlation_id)
        try:
            await self._handler(message)
        except Exception as exc:
            if self._spec is None:
                log.warning(
                    "subscriber failed; event dropped for this subscriber",
                    extra={"message_id": message.message_id, "error": repr(exc)},
                )
                return True
            return await self._reroute(envelope, message, self._spec, exc)
        return True

    async def _reroute(
        self, envelope: _Envelope, message: Message, spec: QueueSpec, error: Exception
    ) -> bool:
        """Send the retry or parking copy; False when that failed and the message is requeued."""
        broker = self._broker
        route = failure_route(
            spec,
            message,
            error,
            exchange=envelope.exchange,
            retry_delays_ms=broker.retry_delays_ms,
            max_attempts=broker.max_attempts,
        )
        log_route(log, spec, message, route)
        try:
            broker._send_copy(route.queue, message, route.headers)
        except Unroutable as exc:
            log.error(
                "could not publish the retry or parking copy; requeueing",
                extra={"message_id": message.message_id, "queue": route.queue, "error": repr(exc)},
            )
            await asyncio.sleep(REQUEUE_PAUSE)
            return False
        return True
