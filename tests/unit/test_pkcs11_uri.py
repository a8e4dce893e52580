"""PKCS#11 URIs (RFC 7512) as the pkcs11 key store reads them."""

from __future__ import annotations

import pytest

from services.ca_worker.keystores.pkcs11_uri import (
    Pkcs11UriError,
    parse_pkcs11_uri,
    pin_source_path,
)


def test_rfc_7512_example_with_module_path() -> None:
    uri = parse_pkcs11_uri(
        "pkcs11:token=certtoken;object=my%20ca;type=private;id=%01%ff"
        "?module-path=/usr/lib/softhsm/libsofthsm2.so"
    )
    assert (uri.token, uri.object, uri.type, uri.id) == (
        "certtoken",
        "my ca",
        "private",
        b"\x01\xff",
    )
    assert uri.module_path == "/usr/lib/softhsm/libsofthsm2.so"
    assert uri.token_attributes == {"label": "certtoken"}
    assert uri.describe_key() == "object='my ca', id=01ff"


def test_token_and_slot_attributes() -> None:
    uri = parse_pkcs11_uri(
        "pkcs11:manufacturer=SoftHSM%20project;serial=9a3f;model=SoftHSM%20v2;slot-id=7;"
        "slot-description=S;library-manufacturer=L;library-version=2.6;object=ca"
        "?pin-source=file:/run/secrets/pin"
    )
    assert uri.token_attributes == {
        "manufacturer_id": "SoftHSM project",
        "serial": "9a3f",
        "model": "SoftHSM v2",
    }
    assert (uri.slot_id, uri.slot, uri.library) == (7, {"description": "S"}, {"manufacturer": "L"})
    assert uri.library_version == "2.6"
    assert pin_source_path(uri.pin_source or "") == "/run/secrets/pin"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("token=x", "must start with 'pkcs11:'"),
        ("pkcs11:token=x;colour=red", "unknown path attribute 'colour'"),
        ("pkcs11:token=x?colour=red", "unknown query attribute 'colour'"),
        ("pkcs11:token=x;module-path=/m.so", "'module-path' belongs in the query"),
        ("pkcs11:token=x?object=ca", "'object' belongs in the path"),
        ("pkcs11:token=x;token=y", "'token' is given twice"),
        ("pkcs11:token=x;object=ca?pin-value=1234", "pin-value is not accepted"),
        ("pkcs11:token=x;type=cert", "type=cert does not name a CA's private key"),
        ("pkcs11:token=x;type=key", "type 'key' is unknown"),
        ("pkcs11:token=x;slot-id=one", "slot-id 'one' is not a decimal number"),
        ("pkcs11:token=x;library-version=v2", "library-version 'v2' is not M or M.N"),
        ("pkcs11:token=x;;object=ca", "an empty attribute"),
        ("pkcs11:token", "'token' is not name=value"),
        ("pkcs11:token=a b", "must be percent-encoded"),
        ("pkcs11:token=100%", "percent-encoded byte"),
        ("pkcs11:token=x?module-path=lib.so", "must be an absolute path"),
        ("pkcs11:token=x#frag", "fragment"),
    ],
)
def test_refused_uris_say_why(text: str, message: str) -> None:
    with pytest.raises(Pkcs11UriError) as raised:
        parse_pkcs11_uri(text)
    assert str(raised.value).startswith("pkcs11_uri: ")
    assert message in str(raised.value)


def test_pin_source_is_a_file_only() -> None:
    assert pin_source_path("/etc/certtoken/pin") == "/etc/certtoken/pin"
    assert pin_source_path("pin") == "pin"
    with pytest.raises(Pkcs11UriError, match="only files"):
        pin_source_path("https://example.org/pin")
    with pytest.raises(Pkcs11UriError, match="local file: URI"):
        pin_source_path("file://elsewhere/pin")
