"""PKCS#11 URIs (RFC 7512): which module, token and key a CA connector signs with."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, unquote_to_bytes, urlsplit

# RFC 7512 2.3: the path attributes that name a library, slot, token or object.
PATH_ATTRIBUTES = frozenset(
    {
        "token",
        "manufacturer",
        "serial",
        "model",
        "library-manufacturer",
        "library-description",
        "library-version",
        "object",
        "type",
        "id",
        "slot-description",
        "slot-manufacturer",
        "slot-id",
    }
)
QUERY_ATTRIBUTES = frozenset({"module-path", "module-name", "pin-source", "pin-value"})
OBJECT_TYPES = frozenset({"public", "private", "cert", "secret-key", "data"})
_VERSION = re.compile(r"^\d+(\.\d+)?$")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class Pkcs11UriError(ValueError):
    """A PKCS#11 URI certtoken cannot use; str() starts with the option's name."""

    def __init__(self, message: str) -> None:
        super().__init__(f"pkcs11_uri: {message}")


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of a PKCS#11 URI that certtoken honours."""

    token: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    object: str | None = None
    id: bytes | None = None
    type: str | None = None
    slot_id: int | None = None
    slot: dict[str, str] = field(default_factory=dict)  # slot-description, slot-manufacturer
    library: dict[str, str] = field(default_factory=dict)  # library-manufacturer, -description
    library_version: str | None = None
    module_path: str | None = None
    module_name: str | None = None
    pin_source: str | None = None

    @property
    def token_attributes(self) -> dict[str, str]:
        """The token's CK_TOKEN_INFO fields the URI names (label, manufacturer, ...)."""
        named = {
            "label": self.token,
            "manufacturer_id": self.manufacturer,
            "serial": self.serial,
            "model": self.model,
        }
        return {k: v for k, v in named.items() if v is not None}

    def describe_key(self) -> str:
        """The key as the URI names it, for messages (never a PIN)."""
        parts = []
        if self.object is not None:
            parts.append(f"object={self.object!r}")
        if self.id is not None:
            parts.append(f"id={self.id.hex()}")
        return ", ".join(parts) or "the only private key"


def parse_pkcs11_uri(uri: str) -> Pkcs11Uri:
    """Parse *uri*; unknown or repeated attributes and a PIN inside the URI are refused."""
    if not isinstance(uri, str) or not uri.lower().startswith("pkcs11:"):
        raise Pkcs11UriError("must start with 'pkcs11:' (RFC 7512)")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in uri):
        raise Pkcs11UriError("spaces, control and non-ASCII characters must be percent-encoded")
    if _PERCENT.search(uri):
        raise Pkcs11UriError("a '%' must start a percent-encoded byte (%XX)")
    rest = uri[len("pkcs11:") :]
    if "#" in rest:
        raise Pkcs11UriError("a fragment ('#') is not part of a PKCS#11 URI")
    path, _, query = rest.partition("?")
    values: dict[str, str] = {}
    raw_id: bytes | None = None
    for part in _split(path, ";"):
        name, value = _attribute(part, PATH_ATTRIBUTES, "path")
        if name in values:
            raise Pkcs11UriError(f"attribute {name!r} is given twice")
        if name == "id":
            raw_id = unquote_to_bytes(value)
        values[name] = value
    for part in _split(query, "&"):
        name, value = _attribute(part, QUERY_ATTRIBUTES, "query")
        if name in values:
            raise Pkcs11UriError(f"attribute {name!r} is given twice")
        values[name] = value
    if "pin-value" in values:
        raise Pkcs11UriError(
            "pin-value is not accepted (the URI is stored in the clear); "
            "give the PIN in a file (pkcs11_pin_file or pin-source)"
        )
    text = {k: unquote(v, errors="strict") for k, v in values.items() if k != "id"}
    object_type = text.get("type")
    if object_type is not None and object_type not in OBJECT_TYPES:
        raise Pkcs11UriError(
            f"type {object_type!r} is unknown; RFC 7512 knows {', '.join(sorted(OBJECT_TYPES))}"
        )
    if object_type not in (None, "private"):
        raise Pkcs11UriError(f"type={object_type} does not name a CA's private key; use private")
    slot_id = None
    if "slot-id" in text:
        if not text["slot-id"].isdigit():
            raise Pkcs11UriError(f"slot-id {text['slot-id']!r} is not a decimal number")
        slot_id = int(text["slot-id"])
    version = text.get("library-version")
    if version is not None and not _VERSION.fullmatch(version):
        raise Pkcs11UriError(f"library-version {version!r} is not M or M.N")
    module_path = text.get("module-path")
    if module_path is not None and not module_path.startswith("/"):
        raise Pkcs11UriError(f"module-path {module_path!r} must be an absolute path")
    return Pkcs11Uri(
        token=text.get("token"),
        manufacturer=text.get("manufacturer"),
        serial=text.get("serial"),
        model=text.get("model"),
        object=text.get("object"),
        id=raw_id,
        type=object_type,
        slot_id=slot_id,
        slot={
            k.removeprefix("slot-"): v
            for k, v in text.items()
            if k in ("slot-description", "slot-manufacturer")
        },
        library={
            k.removeprefix("library-"): v
            for k, v in text.items()
            if k in ("library-manufacturer", "library-description")
        },
        library_version=version,
        module_path=module_path,
        module_name=text.get("module-name"),
        pin_source=text.get("pin-source"),
    )


def pin_source_path(source: str) -> str:
    """The file a ``pin-source`` names (a path or a file: URI); other schemes are refused."""
    if source.startswith("file:"):
        parts = urlsplit(source)
        if parts.netloc not in ("", "localhost") or parts.query or parts.fragment:
            raise Pkcs11UriError(f"pin-source {source!r} must be a local file: URI")
        return unquote(parts.path)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", source):
        raise Pkcs11UriError(f"pin-source {source!r}: only files are supported (a path or file:)")
    return source


def _split(text: str, separator: str) -> list[str]:
    """The attributes of a path or query; empty parts (``a;;b``) are refused."""
    if not text:
        return []
    parts = text.split(separator)
    if any(not p for p in parts):
        raise Pkcs11UriError(f"an empty attribute (a stray {separator!r})")
    return parts


def _attribute(part: str, known: frozenset[str], where: str) -> tuple[str, str]:
    """(name, still percent-encoded value) of one ``name=value``."""
    name, equals, value = part.partition("=")
    if not equals:
        raise Pkcs11UriError(f"{part!r} is not name=value")
    if name not in known:
        other = QUERY_ATTRIBUTES if known is PATH_ATTRIBUTES else PATH_ATTRIBUTES
        if name in other:
            raise Pkcs11UriError(f"attribute {name!r} belongs in the {_other(where)}")
        raise Pkcs11UriError(
            f"unknown {where} attribute {name!r}; known: {', '.join(sorted(known))}"
        )
    return name, value


def _other(where: str) -> str:
    """The other part of the URI than *where*, with its separator."""
    return "query (after '?')" if where == "path" else "path (before '?')"
