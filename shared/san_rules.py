"""A template's SAN rules: which types and values a certificate's subjectAltName may carry."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence

from cryptography import x509

from shared.echo import echo
from shared.name_values import dns_problem, email_problem, text_problem, uri_problem

SAN_TYPES = ("DNS", "email", "IP", "URI")
OWNER_EMAIL = "owner"
"""The ``email`` rule that allows the owner's own address (and adds it)."""
DEFAULT_SANS: Mapping[str, tuple[str, ...]] = {"email": (OWNER_EMAIL,)}
KINDS: dict[type[x509.GeneralName], str] = {
    x509.DNSName: "DNS",
    x509.RFC822Name: "email",
    x509.IPAddress: "IP",
    x509.UniformResourceIdentifier: "URI",
}


def check_san_rules(sans: Mapping[str, Iterable[str]]) -> dict[str, tuple[str, ...]]:
    """Validated SAN rules (type to value rules); ValueError naming the bad rule."""
    checked: dict[str, tuple[str, ...]] = {}
    for kind, values in sans.items():
        if kind not in SAN_TYPES:
            raise ValueError(f"unknown SAN type {kind!r}; known: {', '.join(SAN_TYPES)}")
        if isinstance(values, str):
            raise ValueError(f"{kind}: give a list of value rules")
        rules = tuple(dict.fromkeys(str(v).strip() for v in values))
        for rule in rules:
            problem = _rule_problem(kind, rule)
            if problem:
                raise ValueError(f"{kind} rule {echo(rule)}: {problem}")
        checked[kind] = rules
    return checked


def describe_san_rules(sans: Mapping[str, Sequence[str]]) -> str:
    """The SAN rules in words, for refusals."""
    if not sans:
        return "none"
    parts = []
    for kind, rules in sans.items():
        words = ["the owner's address" if r == OWNER_EMAIL else r for r in rules]
        parts.append(f"{kind}: {', '.join(words) or 'none'}")
    return "; ".join(parts)


def value_problem(kind: str, name: x509.GeneralName) -> str | None:
    """Why a SAN's value is not valid for its type, or None."""
    value = name.value
    if kind == "IP":
        is_address = isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address)
        return None if is_address else "a network is not an address"
    assert isinstance(value, str)
    problem = text_problem(value)
    if problem:
        return problem
    if kind == "DNS":
        # A user certificate names hosts, never every host of a zone.
        return "wildcards are not certified" if "*" in value else dns_problem(value)
    if kind == "email":
        return email_problem(value)
    return uri_problem(value)


def matches(kind: str, name: x509.GeneralName, rule: str, owner_email: str) -> bool:
    """Whether SAN *name* of type *kind* satisfies *rule* for an owner with *owner_email*."""
    value = name.value
    if kind == "IP":
        return value in ipaddress.ip_network(rule, strict=False)
    assert isinstance(value, str)
    if kind == "email":
        if rule == OWNER_EMAIL:
            return bool(owner_email) and value.lower() == owner_email.lower()
        return value.lower().endswith("@" + rule.removeprefix("*@").lower())
    if kind == "DNS":
        host, pattern = value.lower(), rule.lower()
        # "*.zone" allows names under the zone (any depth), not the zone itself.
        return host == pattern or (pattern.startswith("*.") and host.endswith(pattern[1:]))
    if rule.endswith("*"):
        return value.startswith(rule[:-1])
    return value == rule


def _rule_problem(kind: str, rule: str) -> str | None:
    """Why a template's SAN value rule is unusable, or None."""
    if not rule:
        return "empty"
    if kind == "email":
        if rule == OWNER_EMAIL:
            return None
        domain = rule.removeprefix("*@")
        if domain == rule:
            return f"use {OWNER_EMAIL!r} or '*@<domain>'"
        return dns_problem(domain)
    if kind == "DNS":
        return dns_problem(rule.removeprefix("*."))
    if kind == "IP":
        try:
            ipaddress.ip_network(rule, strict=False)
        except ValueError:
            return "not an IP address or network (CIDR)"
        return None
    base = rule.removesuffix("*")
    return uri_problem(base if "://" in base else base + "://x")
