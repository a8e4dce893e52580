"""The few DER pieces a token's signature is put together with: write and split TLVs."""

from __future__ import annotations

SEQUENCE = 0x30
INTEGER = 0x02
BIT_STRING = 0x03


class DERError(ValueError):
    """Bytes that are not the DER this module expects."""


def tlv(tag: int, content: bytes) -> bytes:
    """One DER element: *tag*, definite length, *content*."""
    return bytes([tag]) + _length(len(content)) + content


def sequence(*elements: bytes) -> bytes:
    """A SEQUENCE of already encoded *elements*."""
    return tlv(SEQUENCE, b"".join(elements))


def integer(value: int) -> bytes:
    """A non-negative INTEGER, minimally encoded (a leading zero keeps it positive)."""
    if value < 0:
        raise DERError("negative integers are not needed here")
    content = value.to_bytes(value.bit_length() // 8 + 1, "big")
    while len(content) > 1 and content[0] == 0 and content[1] < 0x80:
        content = content[1:]
    return tlv(INTEGER, content)


def bit_string(data: bytes) -> bytes:
    """A BIT STRING of whole bytes (no unused bits)."""
    return tlv(BIT_STRING, b"\x00" + data)


def ecdsa_signature(raw: bytes) -> bytes:
    """PKCS#11's ECDSA signature (r || s, equal halves) as X9.62's Ecdsa-Sig-Value."""
    if not raw or len(raw) % 2:
        raise DERError(f"an ECDSA signature of {len(raw)} bytes is not r || s")
    half = len(raw) // 2
    r, s = int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    return sequence(integer(r), integer(s))


def signed(tbs: bytes, algorithm: bytes, signature: bytes) -> bytes:
    """A signed object (certificate, CRL, CSR): SEQUENCE { tbs, algorithm, BIT STRING sig }."""
    return sequence(tbs, algorithm, bit_string(signature))


def elements(der: bytes, tag: int = SEQUENCE) -> list[bytes]:
    """The encoded elements (each with tag and length) inside the single element *der*."""
    found, content = _element(der, 0, tag)
    if found != len(der):
        raise DERError("trailing bytes after the element")
    parts: list[bytes] = []
    offset = 0
    while offset < len(content):
        end, _ = _element(content, offset, None)
        parts.append(content[offset:end])
        offset = end
    return parts


def _element(data: bytes, offset: int, tag: int | None) -> tuple[int, bytes]:
    """(end offset, content) of the element at *offset*; its tag must be *tag* if given."""
    if offset + 2 > len(data):
        raise DERError("truncated element")
    if tag is not None and data[offset] != tag:
        raise DERError(f"expected tag 0x{tag:02x}, found 0x{data[offset]:02x}")
    if data[offset] & 0x1F == 0x1F:
        raise DERError("multi-byte tags are not expected here")
    first = data[offset + 1]
    start = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise DERError("bad length")
        length = int.from_bytes(data[start : start + count], "big")
        if length < 0x80 or data[start] == 0:
            raise DERError("length not minimally encoded")
        start += count
    end = start + length
    if end > len(data):
        raise DERError("truncated element")
    return end, data[start:end]


def _length(length: int) -> bytes:
    """A DER definite length."""
    if length < 0x80:
        return bytes([length])
    encoded = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(encoded)]) + encoded
