"""Where a tenant's own model endpoint may point.

Chat calls a tenant's ``base_url`` from inside the deployment, so an address on the private
network (the other services, the cloud metadata endpoint, the database) would let a tenant
reach what only the services should (server-side request forgery). Outside dev and test such
addresses are refused unless the operator allows them (a self-hosted model on the internal
network: ``DOCUCHAT_CHAT_LLM_ALLOW_PRIVATE_BASE_URLS=true``).

The host is resolved when the setting is saved. A name that later resolves elsewhere (DNS
rebinding) is not caught here; egress rules in production (deploy/k8s NetworkPolicies) are the
second line.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from docuchat_common.errors import Unprocessable


def _refused(detail: str) -> Unprocessable:
    return Unprocessable(detail, code="base_url_not_allowed")


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


async def check_base_url(url: str, *, allow_private: bool) -> None:
    """Raise 422 ``base_url_not_allowed`` unless ``url`` is an http(s) URL whose host resolves
    only to public addresses (or private ones are allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _refused("the base URL must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise _refused("put credentials in api_key, not in the base URL")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname,
            parts.port or (443 if parts.scheme == "https" else 80),
            type=socket.SOCK_STREAM,
        )
    except socket.gaierror as exc:
        raise _refused(f"the host {parts.hostname!r} cannot be resolved") from exc
    addresses = {str(info[4][0]) for info in infos}
    private = sorted(a for a in addresses if not _is_public(a))
    if private:
        raise _refused(
            f"the host {parts.hostname!r} resolves to a private or reserved address"
            f" ({', '.join(private)}); only public endpoints are allowed"
        )
