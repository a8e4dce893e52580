"""An answer's shape: its key paths with JSON types, and how two shapes differ."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# A list's elements share one path segment: an answer's shape, not its length, is the contract.
ITEM = "[]"
# An object whose keys are names (realms, CA connectors, templates) has them all as one key.
NAMED = "*"
# Where privacyIDEA gives a JSON number, an integer is a number too.
WIDER = {"number": {"integer"}}


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def key_paths(
    document: Any, named: Iterable[str] = (), ignore: Iterable[str] = ()
) -> dict[str, list[str]]:
    """Every key path of *document* with the sorted JSON types found there; the objects at
    *named* paths have their keys as ``*``, and what lies below an *ignore* path is left out."""
    found: dict[str, set[str]] = {}
    _walk(document, "", found, frozenset(named))
    skipped = tuple(ignore)
    return {
        path: sorted(types)
        for path, types in sorted(found.items())
        if path and not _below(path, skipped)
    }


def _walk(value: Any, path: str, found: dict[str, set[str]], named: frozenset[str]) -> None:
    found.setdefault(path, set()).add(json_type(value))
    if isinstance(value, dict):
        for key, item in value.items():
            segment = NAMED if path in named else str(key)
            _walk(item, f"{path}.{segment}" if path else segment, found, named)
    elif isinstance(value, list):
        for item in value:
            _walk(item, f"{path}{ITEM}", found, named)


def _below(path: str, prefixes: tuple[str, ...]) -> bool:
    """Whether *path* lies below one of *prefixes*."""
    return any(path.startswith((prefix + ".", prefix + ITEM)) for prefix in prefixes)


def value_at(document: Any, path: str) -> Any:
    """The value at a dotted *path* (no list segments), or None where there is none."""
    value = document
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def missing_or_mistyped(
    expected: Mapping[str, list[str]], actual: Mapping[str, list[str]]
) -> list[str]:
    """What *actual* lacks of *expected*, or gives with a type *expected* never has."""
    problems = []
    for path, types in expected.items():
        if path not in actual:
            problems.append(f"missing {path} ({'|'.join(types)})")
            continue
        allowed = set(types).union(*(WIDER.get(kind, set()) for kind in types))
        wrong = [kind for kind in actual[path] if kind not in allowed]
        if wrong:
            problems.append(f"type of {path}: {'|'.join(actual[path])}, expected {'|'.join(types)}")
    return problems


def extra(expected: Mapping[str, list[str]], actual: Mapping[str, list[str]]) -> list[str]:
    """Key paths *actual* gives beyond *expected* (allowed, but worth seeing side by side)."""
    return [
        f"extra {path} ({'|'.join(types)})"
        for path, types in actual.items()
        if path not in expected
    ]
