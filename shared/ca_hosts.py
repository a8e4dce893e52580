"""Where a remote CA connector may connect: its URL's syntax, the CA host allow-list, and the
addresses that are never allowed (link-local and cloud metadata), whatever the list says.

The api checks a connector's URL when it is saved. The ca_worker checks it again before every
connection: it resolves the host name itself, refuses it when any address is refused, and
connects only to addresses it checked (the name goes in the Host header and in TLS SNI, and the
certificate is verified for the name). So a name that later resolves elsewhere (DNS
rebinding) cannot slip a refused address between the check and the connection.

Not covered: what an allowed CA host does with a request (a proxy there reaches anything),
and names that are allowed by name: their addresses are only checked against the never-allowed
networks, not against the listed networks.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

IPAddress = IPv4Address | IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

SETTING = "CERTTOKEN_CA_ALLOWED_HOSTS"
DEFAULT_ALLOWED = ("127.0.0.0/8", "::1", "localhost")
RESOLVE_SECONDS = 5.0

NEVER_NETWORKS = tuple(
    ip_network(n)
    for n in (
        "169.254.0.0/16",  # IPv4 link-local: 169.254.169.254 is most clouds' metadata service
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "168.63.129.16/32",  # Azure WireServer
        "0.0.0.0/8",  # "this host": the local machine under another name
        "::/128",
    )
)
NEVER_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)
_NAT64 = ip_network("64:ff9b::/96")
_URL = re.compile(
    r"(?P<scheme>[^:/?#]*)://(?P<authority>[^/?#]*)(?P<path>[^?#]*)(?P<rest>.*)", re.S
)
_AUTHORITY = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[^:\[\]]+))(?::(?P<port>\d{1,5}))?")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_PATH = re.compile(r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?")


class HostRefused(ValueError):
    """The URL's host may not be a CA (the message says why, never the URL's secrets)."""


class HostUnresolved(OSError):
    """The host name does not resolve now."""


@dataclass(frozen=True)
class CAUrl:
    """A checked connector URL, split into parts."""

    scheme: str
    host: str  # lowercase; an IPv6 address without brackets
    port: int
    path: str
    address: IPAddress | None  # the host when it is an IP address

    @property
    def host_header(self) -> str:
        """The Host header (and the name certificates are verified for)."""
        host = f"[{self.host}]" if isinstance(self.address, IPv6Address) else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def at(self, address: IPAddress) -> str:
        """The URL with *address* in place of the host name."""
        host = f"[{address}]" if isinstance(address, IPv6Address) else str(address)
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def parse_ca_url(url: str) -> CAUrl:
    """*url* split into parts; ValueError naming what is wrong with it."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValueError("must not contain spaces or control characters")
    match = _URL.fullmatch(url)
    if match is None:
        raise ValueError("must be an absolute http:// or https:// URL")
    scheme = match["scheme"].lower()
    if scheme not in ("http", "https"):
        raise ValueError("scheme must be http or https")
    authority = match["authority"]
    if "@" in authority:
        raise ValueError("must not carry a user name or password (userinfo before '@')")
    if match["rest"]:
        raise ValueError("must not have a query or a fragment")
    if not _PATH.fullmatch(match["path"]):
        raise ValueError("the path may hold only URL characters")
    parts = _AUTHORITY.fullmatch(authority.lower())
    if parts is None:
        raise ValueError("invalid host or port")
    port = int(parts["port"]) if parts["port"] else (443 if scheme == "https" else 80)
    if not 0 < port < 65536:
        raise ValueError("port must be 1 to 65535")
    host, address = _host(parts["v6"], parts["name"])
    return CAUrl(scheme, host, port, match["path"], address)


def _host(v6: str | None, name: str | None) -> tuple[str, IPAddress | None]:
    """The host and its address; only canonical IP spellings are addresses."""
    if v6 is not None:
        try:
            address = IPv6Address(v6)
        except ValueError:
            raise ValueError(f"[{v6}] is not an IPv6 address") from None
        if str(address) != v6:
            raise ValueError(f"write the IPv6 address as [{address}]")
        return v6, address
    assert name is not None
    try:
        return name, IPv4Address(name)
    except ValueError:
        pass
    labels = name.split(".")
    if not name.isascii() or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError("the host must be a DNS name (IDNA names in their xn-- form) or an IP")
    if len(name) > 253 or _NUMERIC_LABEL.fullmatch(labels[-1]):
        # 2852039166, 127.1, 0x7f.1, 0177.0.0.1: what resolvers read as addresses.
        raise ValueError("not a canonical IP address: write IPv4 as four decimal numbers a.b.c.d")
    return name, None


def never_reason(address: IPAddress) -> str | None:
    """Why *address* is never a CA (link-local, metadata), else None."""
    candidates: list[IPAddress] = [address]
    if isinstance(address, IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if address in _NAT64:
            embedded = IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            candidates.append(embedded)
    for candidate in candidates:
        if any(candidate.version == n.version and candidate in n for n in NEVER_NETWORKS):
            return f"{address} is a link-local, metadata or unspecified address (never allowed)"
    return None


def allowed_entry(entry: str) -> str:
    """An allow-list entry, normalised: ``*``, a name, ``*.zone`` or an IP network."""
    text = entry.strip().lower()
    if text == "*":
        return text
    try:
        return str(ip_network(text, strict=False))
    except ValueError:
        pass
    name = text.removeprefix("*.")
    if not name or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise ValueError(f"{entry!r} is neither a host name, '*.zone', '*' nor an IP network")
    return text


class HostPolicy:
    """The CA host allow-list, on top of the addresses that are never allowed."""

    def __init__(
        self, allowed: Iterable[str] = DEFAULT_ALLOWED, resolver: Resolver | None = None
    ) -> None:
        self._resolve = resolver or resolve
        entries = [allowed_entry(e) for e in allowed]
        self._any = "*" in entries
        self._zones = tuple(e[1:] for e in entries if e.startswith("*."))
        self._names = frozenset(e for e in entries if "/" not in e and not e.startswith("*"))
        self._networks = tuple(ip_network(e) for e in entries if "/" in e)

    def names(self, host: str) -> bool:
        """Whether the list admits *host* by its name."""
        return self._any or host in self._names or host.endswith(self._zones)

    def admits(self, address: IPAddress) -> bool:
        """Whether the list admits *address*."""
        return self._any or any(
            address.version == n.version and address in n for n in self._networks
        )

    def static_refusal(self, url: CAUrl) -> str | None:
        """Why *url* is refused before any name is resolved, else None."""
        if url.host.rstrip(".") in NEVER_NAMES:
            return f"{url.host} is a cloud metadata host (never allowed)"
        if url.address is None:
            return None
        reason = never_reason(url.address)
        if reason is None and not self.admits(url.address):
            reason = f"{url.address} is not in {SETTING}"
        return reason

    async def check(self, url: str) -> tuple[CAUrl, list[IPAddress]]:
        """The URL and the addresses to connect to; HostRefused or HostUnresolved otherwise."""
        try:
            parsed = parse_ca_url(url)
        except ValueError as exc:
            raise HostRefused(str(exc)) from None
        reason = self.static_refusal(parsed)
        if reason:
            raise HostRefused(reason)
        if parsed.address is not None:
            return parsed, [parsed.address]
        addresses = await self._resolve(parsed.host, parsed.port)
        for address in addresses:
            reason = never_reason(address)
            if reason:
                raise HostRefused(f"{parsed.host} resolves to {reason}")
        if not self.names(parsed.host) and not all(self.admits(a) for a in addresses):
            shown = ", ".join(str(a) for a in addresses)
            raise HostRefused(f"{parsed.host} ({shown}) is not in {SETTING}")
        return parsed, addresses

    async def save_refusal(self, url: str) -> str | None:
        """Why a connector may not be saved with *url*; a listed name may be unresolvable now."""
        try:
            await self.check(url)
        except HostRefused as exc:
            return str(exc)
        except HostUnresolved as exc:
            if not self.names(parse_ca_url(url).host):
                return f"{exc}, and it is not named in {SETTING}"
        return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses *host* resolves to now, in the resolver's order; HostUnresolved if none."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_SECONDS
        )
    except (OSError, TimeoutError):
        raise HostUnresolved(f"{host} does not resolve") from None
    addresses: list[IPAddress] = []
    for info in infos:
        try:
            address = ip_address(str(info[4][0]).split("%", 1)[0])
        except ValueError:
            continue
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise HostUnresolved(f"{host} does not resolve")
    return addresses


def redact_url(url: str) -> str:
    """*url* without any user name or password (stored before userinfo was refused)."""
    return re.sub(r"^([^:/?#]*://)[^/?#]*@", r"\1***@", url)
