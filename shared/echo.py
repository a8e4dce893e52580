"""User input quoted back in an error message: always cut to a short bound."""

from __future__ import annotations

ECHO_MAX = 40


def echo(value: object, limit: int = ECHO_MAX) -> str:
    """*value* quoted (as ``repr``) for a message, cut to *limit* characters with its length."""
    try:
        text = value if isinstance(value, str) else str(value)
    except ValueError:
        # int.__str__ refuses numbers past sys.get_int_max_str_digits().
        return "(a number too long to show)"
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"


def cut(text: str, limit: int) -> str:
    """*text* at most *limit* characters long, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
