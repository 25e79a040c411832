"""Where a sign-in comes from: the connecting address, and X-Forwarded-For only from a proxy the
team configured (`trusted_proxies`).

Streamlit's server (uvicorn) already replaces the connecting address with the header's when the
connection comes from a host it trusts (`FORWARDED_ALLOW_IPS`, by default this machine), so a
tunnel or any program on this machine could name any address it liked. The app sees only the
result and the header; from them it works out whether the server took the header and, unless
the team trusts the connection it came from, puts the connection's own address back.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable

LOOPBACK = "127.0.0.1"
SERVER_TRUST_ENV = "FORWARDED_ALLOW_IPS"  # uvicorn's list of proxies it takes the header from


def _in(address: str, networks: Iterable[str]) -> bool:
    """Whether `address` is one of `networks` (addresses or CIDR networks; '*' is every one;
    this machine is one host whether it is written 127.0.0.1 or ::1)."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    for item in networks:
        item = item.strip()
        if item == "*":
            return True
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            continue
        if ip in network or (ip.is_loopback and network.network_address.is_loopback):
            return True
    return False


def _hops(forwarded_for: str) -> list[str]:
    return [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]


def _nearest_untrusted(hops: list[str], trusted: Iterable[str]) -> str:
    """Walking from the nearest hop back, the first not added by a trusted proxy (the leftmost
    when every hop is trusted), as uvicorn picks it."""
    trusted = list(trusted)
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop
    return hops[0]


def server_trusted() -> list[str]:
    """The proxies Streamlit's server takes X-Forwarded-For from (uvicorn's default: loopback)."""
    raw = os.environ.get(SERVER_TRUST_ENV, "127.0.0.1,::1")
    return [item.strip() for item in raw.split(",") if item.strip()]


def client_address(seen: str | None, forwarded_for: str, trusted_proxies: Iterable[str]) -> str:
    """The address to throttle and record for a connection: `seen` is what the server reports
    (None or '' for this machine), `forwarded_for` the request's X-Forwarded-For header, and
    `trusted_proxies` the team's configured proxies."""
    seen = (seen or "").strip() or LOOPBACK
    hops = _hops(forwarded_for)
    if not hops:
        return seen
    trusted = list(trusted_proxies)
    server = server_trusted()
    if seen == _nearest_untrusted(hops, server):
        # The server took the header, so the connection came from a host it trusts (this
        # machine unless FORWARDED_ALLOW_IPS says otherwise). Believe the header only when the
        # team trusts every such host too; else the connection is the address.
        if all(p != "*" and _in(p.split("/")[0], trusted) for p in server):
            return _nearest_untrusted(hops, trusted)
        return LOOPBACK if _in(LOOPBACK, server) else server[0]
    if _in(seen, trusted):  # a team proxy the server itself did not trust
        return _nearest_untrusted(hops, trusted)
    return seen
