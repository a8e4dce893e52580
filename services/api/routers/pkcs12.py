"""``/token/<serial>/pkcs12``: download or delete a genkey token's PKCS#12 (STUB)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/token", tags=["token"])
