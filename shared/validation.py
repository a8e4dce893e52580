"""Validating stored option documents into pydantic models."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: dict[str, Any], what: str) -> M:
    """*data* as *model*; ValueError naming the first bad field (or *what*) otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or what
        raise ValueError(f"{field}: {first['msg']}") from None
