"""Where a webhook may go: the operator's allow-list, checked after name resolution and before
any connection.

A URL is parsed strictly (``parse_url``): http(s) only (http when the operator allows it), no
user info, no fragment, no backslash, space or control character, no ambiguous number for a host
(``2130706433``, ``0177.0.0.1``, ``0x7f.1``: resolvers read them as addresses, a reader does not),
an IDN host turned into its ASCII form first, a path and query in ASCII. ``check_addresses``
then decides on every address the name resolved to, and the caller connects to the address it
returns, never resolving the name again (a second answer could differ: DNS rebinding):

- an address inside a network of the allow-list passes (the operator named it), but a cloud
  metadata address passes only when listed as itself (``169.254.169.254/32``);
- any other address passes only when the host is a listed name (or under a listed ``*.`` suffix)
  and the address is public (``is_global``, not a metadata address);
- unspecified and multicast addresses never pass; IPv4 inside IPv6 (mapped ``::ffff:a.b.c.d``,
  NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) is judged as the IPv4 address it carries.

One address that fails refuses the destination. The functions are pure (the resolver is a
parameter), so tests feed them hostile input without any traffic.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from memvault.errors import DestinationRefused, InvalidConfig

__all__ = [
    "METADATA_ADDRESSES",
    "AllowList",
    "Destination",
    "Resolver",
    "Target",
    "check_addresses",
    "check_destination",
    "parse_url",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

MAX_URL_LENGTH = 2048
# Cloud instance metadata services (AWS, GCP, Azure, OpenStack; AWS over IPv6; ECS task
# credentials; Alibaba): refused even inside a listed network, unless listed alone.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Labels a resolver may read as a number: decimal, octal (leading 0) or hexadecimal (0x).
_NUMBER_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")
_NAME_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed webhook URL: ``host`` in ASCII, lower case (an IP address without brackets)."""

    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent in the request line
    address: IPAddress | None  # the host, when it is an address

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Destination:
    """A checked target and the one address to connect to (no second resolution)."""

    target: Target
    address: str


@dataclass(frozen=True, slots=True)
class AllowList:
    """The operator's allow-list (``MEMVAULT_WEBHOOK_ALLOWED_HOSTS``)."""

    names: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()  # ".example.com" for "*.example.com"
    networks: tuple[IPNetwork, ...] = ()
    allow_http: bool = False

    @classmethod
    def parse(cls, entries: Iterable[str], *, allow_http: bool = False) -> AllowList:
        """Host names, ``*.`` suffixes, IP addresses and CIDR networks; ``InvalidConfig`` names
        the first entry that is none of them."""
        names: list[str] = []
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for entry in entries:
            text = entry.strip().lower()
            try:
                networks.append(ipaddress.ip_network(text, strict=True))
                continue
            except ValueError:
                pass
            wildcard = text.startswith("*.")
            try:
                name = _ascii_name(text[2:] if wildcard else text)
            except DestinationRefused:
                name = None
            if name is None or _is_number_like(name):
                raise InvalidConfig(
                    f"webhook allow-list entry {entry!r} is not a host name, *.suffix, IP address"
                    " or CIDR network (with its host bits zero)"
                )
            (suffixes if wildcard else names).append(("." + name) if wildcard else name)
        return cls(tuple(names), tuple(suffixes), tuple(networks), allow_http)

    @property
    def empty(self) -> bool:
        return not (self.names or self.suffixes or self.networks)

    def names_host(self, host: str) -> bool:
        return host in self.names or any(host.endswith(s) for s in self.suffixes)


def _is_number_like(host: str) -> bool:
    """Whether a resolver could take ``host`` for an IPv4 address in some notation."""
    labels = host.split(".")
    return bool(labels) and _NUMBER_LABEL.fullmatch(labels[-1]) is not None


def _ascii_name(host: str) -> str:
    """A host name in ASCII lower case (IDNA for a Unicode one), each label checked."""
    host = host.rstrip(".") if host.endswith(".") and not host.endswith("..") else host
    if not host:
        raise DestinationRefused("the webhook URL has no host")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise DestinationRefused("the webhook host is not a valid name") from None
    host = host.lower()
    if len(host) > 253 or not all(_NAME_LABEL.fullmatch(label) for label in host.split(".")):
        raise DestinationRefused("the webhook host is not a valid name")
    return host


def parse_url(url: str, allow: AllowList) -> Target:
    """Check a webhook URL's form (not yet where it leads); ``DestinationRefused`` otherwise."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise DestinationRefused(f"the webhook URL must be a string of 1 to {MAX_URL_LENGTH} chars")
    if _FORBIDDEN.search(url):
        raise DestinationRefused("the webhook URL holds a space, control character or backslash")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or (scheme == "http" and not allow.allow_http):
        allowed = "https or http" if allow.allow_http else "https"
        raise DestinationRefused(f"the webhook URL must use {allowed}")
    if "@" in parts.netloc:
        raise DestinationRefused("the webhook URL must not hold user info (user@host)")
    if parts.fragment or url.endswith("#"):
        raise DestinationRefused("the webhook URL must not have a fragment")
    netloc = parts.netloc
    try:
        port = parts.port
    except ValueError:
        raise DestinationRefused("the webhook URL's port is not a number from 0 to 65535") from None
    if port == 0:
        raise DestinationRefused("the webhook URL's port must be from 1 to 65535")
    if netloc.startswith("["):
        inside = netloc[1 : netloc.find("]")]
        if "%" in inside:
            raise DestinationRefused("the webhook URL must not name an IPv6 zone")
        try:
            address: IPAddress | None = ipaddress.IPv6Address(inside)
        except ValueError:
            raise DestinationRefused("the webhook URL's IPv6 address is not valid") from None
        host = str(address)
    else:
        raw = netloc.rsplit(":", 1)[0] if port is not None or netloc.endswith(":") else netloc
        try:
            address = ipaddress.IPv4Address(raw)
            host = str(address)
        except ValueError:
            address = None
            host = _ascii_name(raw)
            if _is_number_like(host):
                try:  # a Unicode spelling of an address (fullwidth digits) is that address
                    address = ipaddress.IPv4Address(host)
                    host = str(address)
                except ValueError:
                    raise DestinationRefused(
                        "the webhook host looks like a number but is not a dotted-quad IPv4"
                        " address (decimal, octal and hex forms are refused)"
                    ) from None
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    if not path.isascii():
        raise DestinationRefused("the webhook URL's path and query must be ASCII (percent-encode)")
    return Target(scheme, host, port or (443 if scheme == "https" else 80), path, address)


def _embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (mapped, NAT64, 6to4), else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address.sixtofour is not None:
            return address.sixtofour
    return address


def _passes(address: IPAddress, name_listed: bool, allow: AllowList) -> bool:
    if address.is_unspecified or address.is_multicast:
        return False
    metadata = address in METADATA_ADDRESSES
    for network in allow.networks:
        if address.version == network.version and address in network:
            return not metadata or network.num_addresses == 1
    return name_listed and address.is_global and not metadata


def check_addresses(target: Target, addresses: Sequence[str], allow: AllowList) -> str:
    """The address to connect to, once every address of ``addresses`` passed (see the
    module's docstring); ``DestinationRefused`` otherwise."""
    if allow.empty:
        raise DestinationRefused(
            "webhooks are off: the operator lists no destination (MEMVAULT_WEBHOOK_ALLOWED_HOSTS)"
        )
    name_listed = target.address is None and allow.names_host(target.host)
    if not addresses:
        raise DestinationRefused(f"the webhook host {target.host} has no address")
    checked: list[str] = []
    for text in addresses:
        try:
            address = ipaddress.ip_address(text.split("%", 1)[0])
        except ValueError:
            raise DestinationRefused(f"the webhook host {target.host} resolved to no IP") from None
        seen = _embedded_ipv4(address)
        if not (_passes(address, name_listed, allow) and _passes(seen, name_listed, allow)):
            raise DestinationRefused(
                f"the webhook host {target.host} is not in the allow-list, or resolves to an"
                " address it does not permit (private, loopback, link-local or metadata"
                " addresses must be listed as networks)"
            )
        checked.append(str(address))
    return checked[0]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system's resolver gives for ``host`` (TCP)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise DestinationRefused(f"the webhook host {host} does not resolve") from None
    return [str(info[4][0]) for info in found]


def check_destination(
    url: str, allow: AllowList, resolver: Resolver = system_resolver
) -> Destination:
    """Parse, resolve once, check every address: what to connect to, or ``DestinationRefused``."""
    target = parse_url(url, allow)
    if allow.empty:
        check_addresses(target, [], allow)  # raises: webhooks are off
    addresses = (
        [str(target.address)] if target.address is not None else resolver(target.host, target.port)
    )
    return Destination(target, check_addresses(target, addresses, allow))
