"""Where rendered mail goes: an SMTP server (pooled connections), or the outbox folder."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from shared.files import write_private
from shared.notification.planning import Mail
from shared.notification.smtp import SmtpConfig, SmtpPool, TemporaryMailError, tls_context


class Transports:
    """Sends a mail through its SMTP server, or writes it to the outbox folder."""

    def __init__(self, outbox: Path, ca_file: Path | None, pool_size: int) -> None:
        self._outbox = outbox
        self._context = tls_context(ca_file)
        self._pool_size = pool_size
        self._pools: dict[str, SmtpPool] = {}

    async def send(self, mail: Mail, config: SmtpConfig | None) -> None:
        """Deliver *mail*; raise TemporaryMailError or PermanentMailError."""
        if config is None:
            await self._write_outbox(mail)
            return
        await self._pool(config).send(config.sender, mail.address, mail.message.encode("ascii"))

    async def close(self) -> None:
        """Close every pooled connection."""
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()

    def _pool(self, config: SmtpConfig) -> SmtpPool:
        pool = self._pools.get(config.identifier)
        if pool is None or pool.config.fingerprint != config.fingerprint:
            if pool is not None:
                # The server's settings changed: new connections from now on.
                pool.close()
            pool = SmtpPool(config, self._context, self._pool_size)
            self._pools[config.identifier] = pool
        return pool

    async def _write_outbox(self, mail: Mail) -> None:
        # Named by the delivery: writing the same delivery twice replaces, never duplicates.
        name = hashlib.sha256(f"{mail.handler_id}\0{mail.message}".encode()).hexdigest()[:32]
        try:
            await asyncio.to_thread(
                write_private, self._outbox / f"{name}.eml", mail.message.encode("utf-8")
            )
        except OSError as exc:
            raise TemporaryMailError(f"outbox folder {self._outbox}: {exc}") from exc
