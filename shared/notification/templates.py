"""Subject and body templates with ``{tag}`` placeholders: checked when saved, then rendered."""

from __future__ import annotations

import html
import string
from collections.abc import Iterator, Mapping

from shared.notification.vocabulary import TAGS

_FORMATTER = string.Formatter()


class TemplateError(ValueError):
    """A template names an unknown tag or is malformed."""


def check_template(text: str) -> None:
    """Raise TemplateError when *text* has an unknown tag, a format spec or a stray brace."""
    for _literal, _tag in _parts(text):
        pass


def tags_in(text: str) -> set[str]:
    """The tags *text* uses."""
    return {tag for _literal, tag in _parts(text) if tag}


def render(text: str, values: Mapping[str, str], *, html_body: bool = False) -> str:
    """*text* with every tag replaced by its value (HTML-escaped for an HTML body)."""
    out: list[str] = []
    for literal, tag in _parts(text):
        out.append(literal)
        if tag:
            value = values.get(tag, "")
            out.append(html.escape(value, quote=True) if html_body else value)
    return "".join(out)


def one_line(text: str) -> str:
    """*text* with every run of whitespace (line breaks included) turned into one space."""
    return " ".join(text.split())


def _parts(text: str) -> Iterator[tuple[str, str]]:
    """(literal, tag) pairs; ``{{`` and ``}}`` are literal braces."""
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as exc:
        raise TemplateError(f"malformed template ({exc}); write {{{{ and }}}} for braces") from None
    for literal, field, spec, conversion in parsed:
        if field is None:
            yield literal, ""
            continue
        if spec or conversion:
            raise TemplateError(f"tag {{{field}}}: format specs and conversions are not supported")
        if field not in TAGS:
            raise TemplateError(f"unknown tag {{{field}}}; known: {', '.join(TAGS)}")
        yield literal, field
