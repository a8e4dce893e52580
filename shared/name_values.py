"""Whether a text may stand in a certificate name: control characters, DNS names, addresses, URIs.

Each function returns why a value is unusable, or None; callers name the field.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from shared.echo import echo

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}$")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_NEEDS_HOST = ("http", "https", "ldap", "ldaps")


def text_problem(value: str) -> str | None:
    """Control, format and other invisible characters (CR, LF, NUL, bidi overrides), or empty."""
    for char in value:
        category = unicodedata.category(char)
        if category[0] == "C" or category in ("Zl", "Zp"):
            return f"contains the control character U+{ord(char):04X}"
    return None if value.strip() else "is empty"


def email_problem(value: str) -> str | None:
    """Why *value* is no ``local-part@domain`` address in ASCII."""
    local, at, domain = value.rpartition("@")
    if not at or not _EMAIL_LOCAL.match(local):
        return "expected local-part@domain in ASCII"
    return dns_problem(domain)


def dns_problem(value: str) -> str | None:
    """Why *value* is no fully qualified host name of letters, digits and inner hyphens."""
    if not value.isascii():
        return "not ASCII (use the A-label form, xn--)"
    if len(value) > 253:
        return "longer than 253 characters"
    labels = value.lower().split(".")
    if len(labels) < 2 and value != "localhost":
        return "not a fully qualified name"
    for label in labels:
        if not _LABEL.match(label):
            return f"label {echo(label)} is not letters, digits and inner hyphens (1-63)"
    return None


def uri_problem(value: str) -> str | None:
    """Why *value* is no absolute URI (a scheme, a host where the scheme needs one, no userinfo)."""
    if not value.isascii() or any(c.isspace() for c in value):
        return "a URI is ASCII without spaces"
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        return str(exc)
    if not _SCHEME.fullmatch(parts.scheme or ""):
        return "no scheme"
    if parts.scheme in _NEEDS_HOST and not parts.hostname:
        return "no host"
    if parts.username or parts.password:
        return "user information is not allowed"
    return None
