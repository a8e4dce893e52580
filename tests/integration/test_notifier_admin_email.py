"""``certtoken admin add --email``: where handlers with To=internal admin send their mail."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select

from services.cli import main
from shared.db.models import Admin
from shared.db.session import Database


def test_admin_add_stores_a_valid_email(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CERTTOKEN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("CERTTOKEN_DATABASE_URL", raising=False)
    assert main(["admin", "add", "root", "-p", "password-1", "--email", "not an address"]) == 1
    assert "--email:" in capsys.readouterr().err
    assert main(["admin", "add", "root", "-p", "password-1", "--email", "Root@Example.ORG"]) == 0
    assert main(["admin", "add", "plain", "-p", "password-1"]) == 0

    async def stored() -> dict[str, str]:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'certtoken.db'}")
        try:
            async with db.read() as session:
                rows = await session.execute(select(Admin.name, Admin.email))
                return {name: email for name, email in rows}
        finally:
            await db.dispose()

    assert asyncio.run(stored()) == {"root": "Root@example.org", "plain": ""}
