"""Where a stored SMTP ``server`` says to connect: a host, or privacyIDEA's ``smtp[s]://`` URL."""

from __future__ import annotations

import pytest

from shared.db.models import SmtpServer
from shared.notification.smtp import ServerAddress, server_address, smtp_config
from shared.security import SecretBox


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("mail.example.org", ServerAddress("mail.example.org", None, False)),
        ("::1", ServerAddress("::1", None, False)),
        ("smtp://mail.example.org", ServerAddress("mail.example.org", None, False)),
        ("smtps://mail.example.org", ServerAddress("mail.example.org", None, True)),
        ("SMTPS://mail.example.org:465", ServerAddress("mail.example.org", 465, True)),
        ("smtps://[::1]:2465", ServerAddress("::1", 2465, True)),
    ],
)
def test_server_addresses(server: str, expected: ServerAddress) -> None:
    assert server_address(server) == expected


@pytest.mark.parametrize(
    "server",
    ["ftp://h", "smtps://", "smtps://h:99999", "smtps://u@h", "smtp://h/path", "smtp://h?x=1"],
)
def test_bad_server_urls(server: str) -> None:
    with pytest.raises(ValueError):
        server_address(server)


def test_an_smtps_server_uses_implicit_tls_and_never_starttls() -> None:
    row = SmtpServer(
        identifier="m",
        server="smtps://mail.example.org:465",
        port=25,
        starttls=True,
        implicit_tls=False,
        sender="a@example.org",
        username="",
        password="",
        timeout=10,
    )
    config = smtp_config(row, SecretBox("test-secret"))
    assert (config.server, config.port) == ("mail.example.org", 465)
    assert (config.implicit_tls, config.starttls) == (True, False)
