"""What the tests' HTTP clients share."""

from __future__ import annotations

import ssl
from functools import cache


@cache
def tls_context() -> ssl.SSLContext:
    """One default TLS context: httpx otherwise loads the CA bundle (tens of ms) per client."""
    return ssl.create_default_context()
