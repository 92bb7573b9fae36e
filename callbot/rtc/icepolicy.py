"""The one place that decides which network addresses ICE may use.

aioice gathers on every interface except loopback, answers STUN checks from any
source (learning peer-reflexive candidates on the way) and resolves remote
mDNS candidates with multicast. :func:`install_ice_policy` patches aioice
process-wide so that gathering, incoming datagrams and remote candidates are
all restricted to the addresses of one :class:`IceAddressPolicy`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from typing import Any

import aioice.ice
from aioice import Candidate
from aiortc import RTCConfiguration, RTCIceServer

logger = logging.getLogger(__name__)

_MDNS_SUFFIX = ".local"


def _canonical(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address.strip().strip("[]")))
    except ValueError:
        return None


def parse_candidate(candidate: str) -> Candidate | None:
    """Parse an SDP candidate (with or without ``a=`` / ``candidate:``)."""
    text = candidate.strip()
    if text.startswith("a="):
        text = text[2:]
    if text.startswith("candidate:"):
        text = text[len("candidate:") :]
    try:
        return Candidate.from_sdp(text)
    except (ValueError, IndexError):
        return None


class IceAddressPolicy:
    """The set of IP addresses ICE may gather on and talk to."""

    def __init__(self, addresses: Sequence[str] = ("127.0.0.1",)) -> None:
        canonical: list[str] = []
        for address in addresses:
            value = _canonical(address)
            if value is None:
                raise ValueError(f"not an IP address: {address!r}")
            if value not in canonical:
                canonical.append(value)
        self.addresses: tuple[str, ...] = tuple(canonical)

    def __repr__(self) -> str:
        return f"IceAddressPolicy({list(self.addresses)!r})"

    def allows(self, address: str) -> bool:
        """Whether ICE may use this address (locally or as a peer)."""
        value = _canonical(address)
        return value is not None and value in self.addresses

    def accepts_remote_candidate(self, candidate: str) -> bool:
        """Whether a remote SDP candidate may be used; ``.local`` never is."""
        parsed = parse_candidate(candidate)
        if parsed is None:
            return False
        return self.accepts(parsed)

    def accepts(self, candidate: Candidate) -> bool:
        """Whether a parsed remote candidate may be used."""
        if candidate.host.lower().rstrip(".").endswith(_MDNS_SUFFIX):
            return False
        return self.allows(candidate.host)

    def host_addresses(self, use_ipv4: bool, use_ipv6: bool) -> list[str]:
        """The addresses to gather host candidates on."""
        result: list[str] = []
        for address in self.addresses:
            version = ipaddress.ip_address(address).version
            if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
                result.append(address)
        return result


_policy: IceAddressPolicy | None = None
_originals: dict[str, Any] = {}


def current_policy() -> IceAddressPolicy | None:
    """The policy installed in this process, if any."""
    return _policy


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    assert _policy is not None
    return _policy.host_addresses(use_ipv4, use_ipv6)


def _datagram_received(
    self: aioice.ice.StunProtocol, data: bytes | str, addr: tuple[Any, ...]
) -> None:
    # A peer's other interfaces send checks to our candidate even when its SDP
    # lists only allowed addresses; answering them would create peer-reflexive
    # pairs on disallowed addresses, so such datagrams are dropped unread.
    if _policy is not None and not _policy.allows(str(addr[0])):
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("Datagram from disallowed address %s dropped", addr[0])
        return
    _originals["datagram_received"](self, data, addr)


async def _add_remote_candidate(
    self: aioice.ice.Connection, remote_candidate: Candidate | None
) -> None:
    if (
        remote_candidate is not None
        and _policy is not None
        and not _policy.accepts(remote_candidate)
    ):
        logger.info(
            "Remote candidate %s:%s refused by the ICE address policy",
            remote_candidate.host,
            remote_candidate.port,
        )
        return
    await _originals["add_remote_candidate"](self, remote_candidate)


def install_ice_policy(policy: IceAddressPolicy) -> None:
    """Restrict aioice in this whole process to the policy's addresses.

    Installing again replaces the policy; the patches are applied once.
    """
    global _policy
    _policy = policy
    if not _originals:
        _originals["get_host_addresses"] = aioice.ice.get_host_addresses
        _originals["datagram_received"] = aioice.ice.StunProtocol.datagram_received
        _originals["add_remote_candidate"] = aioice.ice.Connection.add_remote_candidate
        aioice.ice.get_host_addresses = _get_host_addresses
        aioice.ice.StunProtocol.datagram_received = _datagram_received  # type: ignore[method-assign]
        aioice.ice.Connection.add_remote_candidate = _add_remote_candidate  # type: ignore[method-assign]
    logger.info("ICE address policy installed: %s", ", ".join(policy.addresses))


def ice_server_host(url: str) -> str | None:
    """The host of a ``stun:``/``stuns:``/``turn:``/``turns:`` URL, if any."""
    scheme, sep, rest = url.partition(":")
    if not sep or scheme.lower() not in ("stun", "stuns", "turn", "turns"):
        return None
    rest = rest.split("?", 1)[0]
    if rest.startswith("//"):
        rest = rest[2:]
    if rest.startswith("["):
        host, bracket, _ = rest[1:].partition("]")
        return host if bracket else None
    host = rest.rsplit(":", 1)[0] if rest.count(":") == 1 else rest
    return host or None


def rtc_configuration(
    ice_servers: list[dict[str, Any]], policy: IceAddressPolicy | None = None
) -> RTCConfiguration:
    """An aiortc configuration with an explicit ICE server list.

    An empty list stays empty: aiortc would otherwise fall back to a public
    STUN server. Entries use the browser's shape (``urls``, ``username``,
    ``credential``); entries without ``urls`` are skipped. With a ``policy``,
    only STUN/TURN servers whose host is an address the policy allows are
    kept: a host name is never resolved and no packet goes to a server outside
    the policy (the real server's join reply lists public STUN hosts).
    """
    servers: list[RTCIceServer] = []
    for entry in ice_servers:
        urls = entry.get("urls", entry.get("url"))
        if isinstance(urls, str):
            url_list = [urls]
        elif isinstance(urls, list) and all(isinstance(u, str) for u in urls):
            url_list = list(urls)
        else:
            logger.warning("ICE server entry without urls ignored: %r", entry)
            continue
        if policy is not None:
            allowed = []
            for url in url_list:
                host = ice_server_host(url)
                if host is not None and policy.allows(host):
                    allowed.append(url)
                else:
                    logger.info(
                        "ICE server %s is outside the ICE address policy, not used",
                        url,
                    )
            url_list = allowed
        if not url_list:
            continue
        username = entry.get("username")
        credential = entry.get("credential")
        servers.append(
            RTCIceServer(
                urls=url_list,
                username=username if isinstance(username, str) else None,
                credential=credential if isinstance(credential, str) else None,
            )
        )
    return RTCConfiguration(iceServers=servers)
