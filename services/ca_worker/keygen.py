"""Key pairs and CSRs of genkey tokens, made in a pool of low-priority processes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ObjectIdentifier

from shared.pki import KEY_TYPES, generate_private_key, name_text, signature_hash_for

T = TypeVar("T")

# Children run at this much lower priority (and in Linux's idle scheduling class): a burst of
# RSA-4096 keys must not starve the api and the ca_worker's event loop of CPU.
NICENESS = 10

# The CSR's subject as (dotted OID, value) pairs: plain values cross into the pool's processes.
Attributes = tuple[tuple[str, str], ...]


class KeygenRefused(ValueError):
    """The key cannot be made as asked; str() is the token's failure reason."""


@dataclass(frozen=True)
class NewKey:
    """A generated private key (PKCS#8 PEM, unencrypted: seal it at once) and its CSR."""

    private_key_pem: bytes
    csr_pem: str
    subject: str  # RFC 4514


def make_key(keytype: str, attributes: Attributes) -> NewKey:
    """Generate a key of *keytype* and a CSR for *attributes*: CPU-heavy, run it in the pool."""
    if keytype not in KEY_TYPES:
        raise KeygenRefused(f"keytype: unknown {keytype!r}; choose one of {', '.join(KEY_TYPES)}")
    key = generate_private_key(keytype)
    subject = x509.Name(
        [x509.NameAttribute(ObjectIdentifier(oid), value) for oid, value in attributes]
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .sign(key, signature_hash_for(key))
    )
    return NewKey(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        name_text(subject),
    )


def _lower_priority() -> None:
    os.nice(NICENESS)
    if hasattr(os, "SCHED_IDLE"):
        # Linux: a waking api or worker thread preempts an idle-class child at once; with
        # nice alone, CSR enrollments lost a third of their throughput to a genkey burst.
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


class KeyPool:
    """A process pool for key generation and PKCS#12 building, made on first use."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._executor: ProcessPoolExecutor | None = None

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn(*args)`` in a child process; *fn* and its arguments must pickle."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool(), functools.partial(fn, *args))

    async def make(self, keytype: str, attributes: Attributes) -> NewKey:
        """A new key of *keytype* and its CSR, made off this process."""
        return await self.call(make_key, keytype, attributes)

    async def shutdown(self) -> None:
        """Stop the children (work not started is cancelled)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # Not fork: the ca_worker has threads (asyncio.to_thread, the database driver),
            # and a forked child could inherit a lock some thread held.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])
            self._executor = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_lower_priority
            )
        return self._executor
