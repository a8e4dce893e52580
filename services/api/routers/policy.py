"""``/policy/``: privacyIDEA-style policies (STUB until implemented)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/policy", tags=["policy"])
