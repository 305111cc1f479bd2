"""Where a tenant's webhook may go: https to public addresses only.

A tenant chooses the URL, so without this guard the worker would POST into the network it
runs in (metadata services, the database, localhost admin ports). The host is resolved
first and every address checked (`ipaddress.is_global`: no private, loopback, link-local,
shared or reserved ranges); the request then goes to the checked address, with the name
kept for the Host header and TLS (SNI and certificate), so a second DNS answer cannot swap
the target. Local mode (development, tests) allows http and any address.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import anyio
import httpx

__all__ = ["RefusedTarget", "Target", "resolve_target"]


class RefusedTarget(ValueError):
    """A URL the deliverer will not call (scheme or address); final, never retried."""


@dataclass(frozen=True, slots=True)
class Target:
    """What to connect to: `url` (host pinned to the checked address), the Host header and
    the TLS server name."""

    url: httpx.URL
    host: str
    sni_hostname: str | None


async def resolve_target(url: str, *, local_mode: bool) -> Target:
    """Check the URL and pin its address; raises RefusedTarget."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise RefusedTarget(f"invalid URL: {exc}") from None
    if parsed.scheme != "https" and not (local_mode and parsed.scheme == "http"):
        raise RefusedTarget(f"only https:// URLs are called (got {parsed.scheme}://)")
    host = parsed.host
    if not host:
        raise RefusedTarget("the URL has no host")
    if local_mode:
        return Target(url=parsed, host=parsed.netloc.decode("ascii"), sni_hostname=None)
    port = parsed.port or 443
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise RefusedTarget(f"cannot resolve {host}: {exc}") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        mapped = getattr(address, "ipv4_mapped", None)
        if not address.is_global or (mapped is not None and not mapped.is_global):
            raise RefusedTarget(f"{host} resolves to {address}: private, loopback and link-local addresses"
                                " are not called")  # fmt: skip
    return Target(url=parsed.copy_with(host=str(addresses[0])), host=parsed.netloc.decode("ascii"),
                  sni_hostname=host)  # fmt: skip
