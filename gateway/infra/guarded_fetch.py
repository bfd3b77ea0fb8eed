"""The one way the gateway requests a URL that came from outside (provider media, anything future).

Every hop of a fetch (the URL and each redirect) is checked before it is requested:
- its scheme is in GATEWAY_FETCH_SCHEMES;
- every address its host resolves to (or the literal IP) is public: loopback, private, link-local,
  multicast, unspecified and reserved ranges are refused unless they lie in one of the networks of
  GATEWAY_FETCH_ALLOW_NETWORKS (empty by default; tests allow 127.0.0.0/8 for their fake servers).
  The check runs inside the connector's resolver, so the address checked is the address connected
  to (no second DNS answer can swap in another);
- the first URL must be on the caller's host allow-list (a provider's own media hosts), and the
  caller's credentials go only to hops on that list: a redirect elsewhere (Twilio's CDN) is
  followed without them.
The body is capped at GATEWAY_FETCH_MAX_BYTES, the whole fetch (all hops) at GATEWAY_FETCH_TIMEOUT
seconds, redirects at GATEWAY_FETCH_MAX_REDIRECTS.

URLs that agents or integrations supply are never fetched: they go to providers as links.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from gateway.app.log import get_logger
from gateway.app.settings import Settings
from gateway.channels.errors import MediaDownloadError

log = get_logger(__name__)
REDIRECTS = (301, 302, 303, 307, 308)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class FetchRefused(MediaDownloadError):
    """The URL (or a redirect) breaks the fetch policy; nothing was requested from it."""


class BlockedAddress(OSError):
    """A host resolved to an address the policy forbids (raised inside the resolver)."""


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def _non_public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_multicast
            or addr.is_unspecified or addr.is_reserved or not addr.is_global)


def address_blocked(ip: str, allowed: Networks = ()) -> bool:
    """True for loopback, private, link-local, multicast, unspecified, reserved and other non-global
    addresses (IPv4 ones wrapped in IPv6 too: mapped, 6to4, Teredo), unless inside `allowed`."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return True
    candidates = [addr]
    if isinstance(addr, ipaddress.IPv6Address):
        candidates += [a for a in (addr.ipv4_mapped, addr.sixtofour, addr.teredo and addr.teredo[1]) if a]
    return any(_non_public(a) and not any(a in net for net in allowed if a.version == net.version)
               for a in candidates)


class GuardedResolver(AbstractResolver):
    """DNS resolution that refuses a host when any of its addresses is not public (nor allowed)."""

    def __init__(self, allowed: Networks):
        self._inner = DefaultResolver()
        self._allowed = allowed

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if any(address_blocked(r["host"], self._allowed) for r in results):
            raise BlockedAddress(f"{host} resolves to a non-public address")
        return results

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True)
class HostList:
    """Hosts a provider's credentials may go to: `host` (default port of the scheme), `host:port`,
    or `*.domain` (any subdomain, default port)."""

    entries: tuple[str, ...]

    @classmethod
    def of(cls, entries: Iterable[str], *api_bases: str | None) -> "HostList":
        """The configured entries plus the exact origin (host:port) of each provider API base."""
        out = [e.strip().lower() for e in entries if e.strip()]
        for base in api_bases:
            if base:
                url = URL(base)
                if url.host:
                    out.append(f"{url.host.lower()}:{url.port}")
        return cls(tuple(out))

    def allows(self, url: URL) -> bool:
        host, port = (url.host or "").lower(), url.port
        default = _DEFAULT_PORTS.get(url.scheme)
        for entry in self.entries:
            name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
            want_port = int(entry_port) if entry_port.isdigit() else default
            if port != want_port:
                continue
            if name == host or (name.startswith("*.") and host.endswith(name[1:])):
                return True
        return False


@dataclass(frozen=True)
class Fetched:
    data: bytes
    content_type: str | None
    url: str


class GuardedFetcher:
    """Fetches outside URLs under the policy above; one per process (owns its HTTP session)."""

    def __init__(self, *, allow_networks: Iterable[str] = (), schemes: Iterable[str] = ("https",),
                 max_bytes: int = 25 * 1024 * 1024, timeout: float = 30.0, max_redirects: int = 5):
        self.allow_networks: Networks = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)
        self.schemes = frozenset(schemes)
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_redirects = max_redirects
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> "GuardedFetcher":
        return cls(allow_networks=s.fetch_allow_networks, schemes=s.fetch_schemes, max_bytes=s.fetch_max_bytes,
                   timeout=s.fetch_timeout, max_redirects=s.fetch_max_redirects)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.allow_networks))
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def check(self, url: URL) -> None:
        """Refuse a URL whose scheme is not allowed or whose literal IP is not public."""
        if url.scheme not in self.schemes:
            raise FetchRefused(f"scheme {url.scheme or '(none)'!r} is not allowed")
        if not url.host or url.user or url.password:
            raise FetchRefused("the URL has no host, or carries credentials")
        try:
            ipaddress.ip_address(url.host.split("%", 1)[0])
        except ValueError:
            return   # a name: checked by the resolver when it is looked up
        if address_blocked(url.host, self.allow_networks):
            raise FetchRefused("the URL points at a non-public address")

    async def fetch(self, url: str, *, hosts: HostList, headers: Mapping[str, str] | None = None) -> Fetched:
        """GET `url` (on `hosts`), following checked redirects; `headers` only go to `hosts`."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._fetch(URL(url), hosts, dict(headers or {}))
        except TimeoutError:
            raise MediaDownloadError(f"no complete answer within {self.timeout:g} s") from None
        except (ValueError, TypeError) as exc:   # yarl: malformed URL or Location
            raise FetchRefused(f"malformed URL: {exc}") from None

    async def _fetch(self, url: URL, hosts: HostList, headers: dict[str, str]) -> Fetched:
        if not url.is_absolute() or not hosts.allows(url):
            raise FetchRefused(f"{url.host or url!s} is not one of the provider's media hosts")
        for _ in range(self.max_redirects + 1):
            self.check(url)
            sent = headers if hosts.allows(url) else {}
            try:
                async with self._http().get(url, headers=sent, allow_redirects=False) as resp:
                    if resp.status in REDIRECTS and resp.headers.get("Location"):
                        url = resp.url.join(URL(resp.headers["Location"]))
                        continue
                    if resp.status != 200:
                        raise MediaDownloadError(f"answered HTTP {resp.status}")
                    content_type = resp.content_type if "Content-Type" in resp.headers else None
                    return Fetched(await self._read(resp), content_type, str(resp.url))
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, BlockedAddress):
                    raise FetchRefused(str(exc.os_error)) from None
                raise MediaDownloadError(f"connection failed: {type(exc).__name__}") from None
            except aiohttp.ClientError as exc:
                raise MediaDownloadError(f"request failed: {type(exc).__name__}") from None
        raise FetchRefused(f"more than {self.max_redirects} redirects")

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        if resp.content_length is not None and resp.content_length > self.max_bytes:
            raise FetchRefused(f"larger than {self.max_bytes} bytes")
        data = bytearray()
        async for chunk in resp.content.iter_chunked(64 * 1024):
            data.extend(chunk)
            if len(data) > self.max_bytes:
                raise FetchRefused(f"larger than {self.max_bytes} bytes")
        return bytes(data)

