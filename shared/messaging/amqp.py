"""The RabbitMQ broker on aio-pika: confirmed publishes, ack after handler, TTL retries, parking."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import PublishError
from aiormq.exceptions import ChannelNotFoundEntity

from shared.events import CONTENT_TYPE
from shared.logs import correlation_id
from shared.messaging.acks import Acker
from shared.messaging.base import Broker, Consumer, Handler, Message, Unroutable
from shared.messaging.routing import (
    REQUEUE_PAUSE,
    failure_route,
    incoming_message,
    log_route,
    outgoing_headers,
    parked_summary,
    replay_headers,
    validate_policy,
)
from shared.messaging.topology import EVENTS_EXCHANGE, JOBS_EXCHANGE, WORK_QUEUES, QueueSpec

log = logging.getLogger(__name__)

EXCHANGES = {
    JOBS_EXCHANGE: aio_pika.ExchangeType.DIRECT,
    EVENTS_EXCHANGE: aio_pika.ExchangeType.TOPIC,
}
QueueType = Literal["quorum", "classic"]
# Deliveries of one message without an ack (consumer crashes) before a quorum queue parks it.
DEFAULT_DELIVERY_LIMIT = 20
PUBLISH_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
PEEK_RETURN_SECONDS = 2.0


class AmqpBroker(Broker):
    """RabbitMQ over one robust connection: one confirming publisher, a channel per consumer."""

    def __init__(
        self,
        url: str,
        *,
        prefetch: int = 64,
        retry_delays_ms: Sequence[int] = (1000, 5000, 30000, 120000),
        max_attempts: int = 6,
        queues: Sequence[QueueSpec] = WORK_QUEUES,
        connection_name: str = "certtoken",
        queue_type: QueueType = "quorum",
        delivery_limit: int = DEFAULT_DELIVERY_LIMIT,
    ) -> None:
        validate_policy(prefetch, retry_delays_ms, max_attempts)
        if delivery_limit < 1:
            raise ValueError("delivery_limit must be at least 1")
        self.queue_type: QueueType = queue_type
        self.delivery_limit = delivery_limit
        self._url = url
        self.prefetch = prefetch
        self.retry_delays_ms = tuple(retry_delays_ms)
        self.max_attempts = max_attempts
        self._queues = tuple(queues)
        self._connection_name = connection_name
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._consumers: set[AmqpConsumer] = set()

    async def start(self) -> None:
        """Connect, open the confirming publisher channel and declare the topology."""
        if self._connection is not None:
            return
        connection = await aio_pika.connect_robust(
            self._url,
            timeout=CONNECT_TIMEOUT,
            client_properties={"connection_name": self._connection_name},
        )
        try:
            publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchanges[""] = publisher.default_exchange
            for name, kind in EXCHANGES.items():
                self._exchanges[name] = await publisher.declare_exchange(name, kind, durable=True)
            for spec in self._queues:
                await self._declare(publisher, spec)
        except BaseException:
            await connection.close()
            self._exchanges.clear()
            raise
        self._connection, self._publisher = connection, publisher

    async def close(self, drain_timeout: float = 10.0) -> None:
        """Stop every consumer (draining up to *drain_timeout*), then disconnect."""
        await asyncio.gather(
            *(c.stop(drain_timeout) for c in list(self._consumers)), return_exceptions=True
        )
        connection, self._connection, self._publisher = self._connection, None, None
        self._exchanges.clear()
        if connection is not None:
            try:
                await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT)
            except Exception as exc:
                log.warning("closing the RabbitMQ connection failed", extra={"error": repr(exc)})

    async def publish(self, exchange: str, routing_key: str, message: Message) -> None:
        """Publish persistently and mandatorily; return once RabbitMQ confirmed it."""
        await self._send(exchange, routing_key, message, outgoing_headers(message))

    async def consume(
        self, queue: QueueSpec, handler: Handler, *, prefetch: int | None = None
    ) -> Consumer:
        """Consume *queue* on its own channel: ack after *handler*, retry or park on failure."""
        channel = await self._conn().channel(publisher_confirms=False)
        try:
            await channel.set_qos(prefetch_count=prefetch or self.prefetch)
            amqp_queue = await self._declare(channel, queue)
            consumer = AmqpConsumer(self, channel, amqp_queue, handler, queue)
            await consumer.start()
        except BaseException:
            await channel.close()
            raise
        return consumer

    async def subscribe(self, exchange: str, pattern: str, handler: Handler) -> Consumer:
        """A private, auto-deleted queue bound by *pattern*; failures are logged, never retried."""
        self._exchange(exchange)
        channel = await self._conn().channel(publisher_confirms=False)
        try:
            # A client-chosen name lets the robust connection declare it again after a reconnect.
            name = f"{self._connection_name}.subscriber.{uuid.uuid4().hex}"
            amqp_queue = await channel.declare_queue(name, exclusive=True, auto_delete=True)
            await amqp_queue.bind(exchange, pattern)
            consumer = AmqpConsumer(self, channel, amqp_queue, handler, None)
            await consumer.start()
        except BaseException:
            await channel.close()
            raise
        return consumer

    async def ping(self) -> bool:
        """Whether the connection is up now (never raises)."""
        try:
            connection = self._connection
            return (
                connection is not None
                and not connection.is_closed
                and connection.connected.is_set()
                and self._publisher is not None
                and not self._publisher.is_closed
            )
        except Exception:
            return False

    async def queue_depth(self, queue: str) -> int:
        """Messages ready in *queue*; LookupError when it does not exist."""
        # A passive declare of a missing queue closes its channel: use a throw-away one.
        async with self._scratch_channel() as channel:
            declared = await _passive(channel, queue)
            return int(declared.declaration_result.message_count or 0)

    async def peek_parked(self, queue_spec: QueueSpec, limit: int = 20) -> list[dict[str, Any]]:
        """Describe up to *limit* parked messages, leaving them parked."""
        summaries: list[dict[str, Any]] = []
        # Closing the channel returns every unacked message to its place in the queue.
        async with self._scratch_channel() as channel:
            parking = await _passive(channel, queue_spec.parking)
            depth = int(parking.declaration_result.message_count or 0)
            for _ in range(limit):
                incoming = await parking.get(no_ack=False, fail=False)
                if incoming is None:
                    break
                summaries.append(parked_summary(_to_message(incoming)))
        await self._returned(queue_spec.parking, depth)
        return summaries

    async def _returned(self, queue: str, depth: int) -> None:
        """Wait (briefly) until *queue* counts *depth* messages again after a peek."""
        # A quorum queue applies the return of unacked messages through its log, a moment
        # after the channel closed: a replay or a count right after a peek must see them.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PEEK_RETURN_SECONDS):
                while await self.queue_depth(queue) < depth:  # noqa: ASYNC110 - broker state
                    await asyncio.sleep(0.02)

    async def replay_parked(self, queue_spec: QueueSpec, limit: int | None = None) -> int:
        """Move parked messages back to their queue with attempts reset; return how many."""
        moved = 0
        async with self._scratch_channel() as channel:
            await self._declare(channel, queue_spec)
            parking = await _passive(channel, queue_spec.parking)
            # Bounded by the depth seen now, so messages parked meanwhile wait for the next run.
            count = int(parking.declaration_result.message_count or 0)
            for _ in range(count if limit is None else min(limit, count)):
                incoming = await parking.get(no_ack=False, fail=False)
                if incoming is None:
                    break
                message = _to_message(incoming)
                replayed = Message(
                    body=message.body,
                    message_id=message.message_id,
                    type=message.type,
                    correlation_id=message.correlation_id,
                )
                await self._send("", queue_spec.name, replayed, replay_headers(message))
                await incoming.ack()
                moved += 1
        if moved:
            log.info("replayed parked messages", extra={"queue": queue_spec.name, "count": moved})
        return moved

    async def _send_copy(self, queue: str, message: Message, headers: dict[str, Any]) -> None:
        """Publish a copy of *message* straight to *queue* (default exchange), confirmed."""
        await self._send("", queue, message, headers)

    def _forget(self, consumer: AmqpConsumer) -> None:
        """Drop a stopped consumer from the set that close() stops."""
        self._consumers.discard(consumer)

    def _remember(self, consumer: AmqpConsumer) -> None:
        """Track a running consumer so that close() stops it."""
        self._consumers.add(consumer)

    async def _send(
        self, exchange: str, routing_key: str, message: Message, headers: dict[str, Any]
    ) -> None:
        if self._connection is None:
            raise RuntimeError("broker not started")
        if not await self.ping():
            # A robust channel would hold the publish until it reconnects: fail fast instead,
            # so that callers (the outbox) keep the message and answer their own clients.
            raise ConnectionError("RabbitMQ is not connected")
        target = self._exchange(exchange)
        amqp_message = aio_pika.Message(
            body=message.body,
            headers=headers,
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id or None,
            correlation_id=message.correlation_id or None,
            type=message.type or None,
        )
        try:
            await target.publish(amqp_message, routing_key, mandatory=True, timeout=PUBLISH_TIMEOUT)
        except PublishError as exc:
            raise Unroutable(
                f"no queue for {routing_key!r} on {exchange or '(default)'!r}"
            ) from exc

    async def _declare(self, channel: AbstractChannel, spec: QueueSpec) -> AbstractQueue:
        """Declare *spec*'s queue, bindings, parking queue and delay queues (idempotent)."""
        self._exchange(spec.exchange)
        main = await channel.declare_queue(
            spec.name,
            durable=True,
            arguments=self._arguments(spec.parking, poison=True),
        )
        for key in spec.routing_keys:
            await main.bind(spec.exchange, key)
        await channel.declare_queue(spec.parking, durable=True, arguments=self._arguments())
        for delay in sorted(set(self.retry_delays_ms)):
            await channel.declare_queue(
                spec.retry_queue(delay),
                durable=True,
                arguments={**self._arguments(spec.name), "x-message-ttl": delay},
            )
        return main

    def _arguments(self, dead_letter_to: str = "", *, poison: bool = False) -> dict[str, Any]:
        """Queue arguments: its type, where dead letters go, and the poison-message limit."""
        arguments: dict[str, Any] = {"x-queue-type": self.queue_type}
        if dead_letter_to:
            arguments.update(
                {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead_letter_to}
            )
        if self.queue_type == "quorum":
            if dead_letter_to:
                # Dead letters move only once the target queue confirmed them (RabbitMQ 3.10+);
                # that strategy needs publishers refused, not messages dropped, when full.
                arguments.update(
                    {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}
                )
            if poison:
                # A message that keeps crashing its consumer (redelivered, never settled) is
                # parked after this many deliveries instead of looping forever.
                arguments["x-delivery-limit"] = self.delivery_limit
        return arguments

    def _conn(self) -> AbstractRobustConnection:
        if self._connection is None:
            raise RuntimeError("broker not started")
        return self._connection

    def _scratch_channel(self) -> aio_pika.Channel:
        """A plain (not robust) channel for one operation: never reopened behind our back."""
        return aio_pika.Channel(self._conn(), publisher_confirms=False)

    def _exchange(self, name: str) -> AbstractExchange:
        if not self._exchanges:
            raise RuntimeError("broker not started")
        try:
            return self._exchanges[name]
        except KeyError:
            raise ValueError(f"unknown exchange {name!r}") from None


class AmqpConsumer(Consumer):
    """One basic.consume on its own channel; each delivery is handled in its own task."""

    def __init__(
        self,
        broker: AmqpBroker,
        channel: AbstractChannel,
        queue: AbstractQueue,
        handler: Handler,
        spec: QueueSpec | None,
    ) -> None:
        self._broker = broker
        self._channel = channel
        self._queue = queue
        self._handler = handler
        self._spec = spec
        self._tag = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._closing = False
        self._acker = Acker()

    async def start(self) -> None:
        """Begin the basic.consume; a subscriber's without acknowledgements."""
        # A subscription's events are wake-ups for whoever waits in this process, and its queue
        # dies with the process: an ack would cost a frame and RabbitMQ its bookkeeping of
        # unacknowledged messages, and guard nothing.
        self._tag = await self._queue.consume(self._on_delivery, no_ack=self._spec is None)
        self._broker._remember(self)

    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Cancel the basic.consume, wait for handlers in hand, then close the channel."""
        if self._stopped:
            return
        self._stopped = True
        self._broker._forget(self)
        connected = await self._broker.ping()
        try:
            # A robust channel waits for a reconnect; with RabbitMQ away there is nothing
            # to cancel (its side of the consumer is gone already).
            if connected:
                await asyncio.wait_for(self._queue.cancel(self._tag), CLOSE_TIMEOUT)
        except Exception as exc:
            log.debug("basic.cancel failed", extra={"queue": self._queue.name, "error": repr(exc)})
        # Deliveries that reach _on_delivery from now on (sent before the cancel-ok) are not
        # started, so a stop takes on no new work: left unacked, they go back to the queue when
        # the channel closes. The handlers in hand finish, in time.
        self._closing = True
        deadline = asyncio.get_running_loop().time() + drain_timeout
        in_hand = len(self._tasks)
        while self._tasks and (left := deadline - asyncio.get_running_loop().time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)
        pending = set(self._tasks)
        # Their messages stay unacked, so RabbitMQ delivers them again once the channel closes.
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        # Acked before the channel closes: a quorum queue returns whatever is unsettled then.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._acker.drain(), CLOSE_TIMEOUT)
        log.info(
            "consumer stopped",
            extra={"queue": self._queue.name, "in_hand": in_hand, "unfinished": len(pending)},
        )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._channel.close(), CLOSE_TIMEOUT)

    async def _on_delivery(self, incoming: AbstractIncomingMessage) -> None:
        if self._spec is not None:
            self._acker.delivered(incoming)
        if self._closing:
            return  # left unacked: RabbitMQ requeues it when the channel closes, unhandled
        # Our own task, not aiormq's, so that stop() decides when a handler is cancelled.
        task = asyncio.create_task(self._process(incoming))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process(self, incoming: AbstractIncomingMessage) -> None:
        message = _to_message(incoming)
        correlation_id.set(message.correlation_id)
        try:
            await self._handler(message)
        except Exception as exc:
            if self._spec is None:
                log.warning(
                    "subscriber failed; event dropped for this subscriber",
                    extra={"message_id": message.message_id, "error": repr(exc)},
                )
            elif not await self._reroute(incoming, message, self._spec, exc):
                return
        if self._spec is not None:  # a subscription's deliveries come without acks
            self._acker.handled(incoming)

    async def _reroute(
        self,
        incoming: AbstractIncomingMessage,
        message: Message,
        spec: QueueSpec,
        error: Exception,
    ) -> bool:
        """Publish the retry or parking copy; False (message requeued) when that failed."""
        broker = self._broker
        route = failure_route(
            spec,
            message,
            error,
            exchange=incoming.exchange or "",
            retry_delays_ms=broker.retry_delays_ms,
            max_attempts=broker.max_attempts,
        )
        log_route(log, spec, message, route)
        try:
            await broker._send_copy(route.queue, message, route.headers)
        except Exception as exc:
            log.error(
                "could not publish the retry or parking copy; requeueing",
                extra={"message_id": message.message_id, "queue": route.queue, "error": repr(exc)},
            )
            await asyncio.sleep(REQUEUE_PAUSE)
            await self._acker.nack(incoming)
            return False
        return True


async def _passive(channel: AbstractChannel, name: str) -> AbstractQueue:
    """The existing queue *name*; LookupError when there is none."""
    try:
        return await channel.declare_queue(name, passive=True)
    except ChannelNotFoundEntity as exc:
        raise LookupError(f"no queue {name!r}") from exc


def _to_message(incoming: AbstractIncomingMessage) -> Message:
    return incoming_message(
        incoming.body,
        message_id=incoming.message_id or "",
        type=incoming.type or "",
        correlation_id=incoming.correlation_id or "",
        headers=incoming.headers or {},
        routing_key=incoming.routing_key or "",
        redelivered=bool(incoming.redelivered),
    )
