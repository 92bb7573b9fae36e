"""Tests of the ICE address policy (callbot/rtc/icepolicy.py)."""

from __future__ import annotations

import asyncio
import socket

import aioice.ice
import pytest
from aioice import Candidate, stun
from aiortc import RTCPeerConnection

from callbot.rtc.icepolicy import (
    IceAddressPolicy,
    ice_server_host,
    install_ice_policy,
    parse_candidate,
    rtc_configuration,
)

HOST = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"
SRFLX = "candidate:1 1 udp 1694498815 127.0.0.1 5 typ srflx raddr 0.0.0.0 rport 0"


def test_allows_only_listed_addresses() -> None:
    policy = IceAddressPolicy()
    assert policy.allows("127.0.0.1")
    assert not policy.allows("127.0.0.2")
    assert not policy.allows("192.168.1.20")
    assert not policy.allows("not-an-ip")


def test_ipv6_addresses_are_canonical() -> None:
    policy = IceAddressPolicy(["0:0:0:0:0:0:0:1", "127.0.0.1"])
    assert policy.addresses == ("::1", "127.0.0.1")
    assert policy.allows("::1")
    assert policy.allows("[::1]")


def test_rejects_bad_address_in_policy() -> None:
    with pytest.raises(ValueError):
        IceAddressPolicy(["localhost"])


@pytest.mark.parametrize(
    ("candidate", "accepted"),
    [
        (HOST, True),
        ("a=" + HOST, True),
        (HOST[len("candidate:") :], True),
        ("candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host", False),
        ("candidate:1 1 udp 2130706431 3f2a9b1c-4d5e.local 50000 typ host", False),
        ("candidate:1 1 udp 2130706431 host.LOCAL 50000 typ host", False),
        (SRFLX, True),
        ("candidate:broken", False),
        ("", False),
    ],
)
def test_accepts_remote_candidate(candidate: str, accepted: bool) -> None:
    assert IceAddressPolicy().accepts_remote_candidate(candidate) is accepted


def test_parse_candidate_keeps_foundation() -> None:
    parsed = parse_candidate("candidate:842163049 1 udp 1 127.0.0.1 9 typ host")
    assert parsed is not None
    assert parsed.foundation == "842163049"
    assert parsed.port == 9


def test_host_addresses_follow_ip_versions() -> None:
    policy = IceAddressPolicy(["127.0.0.1", "::1"])
    assert policy.host_addresses(True, False) == ["127.0.0.1"]
    assert policy.host_addresses(True, True) == ["127.0.0.1", "::1"]
    assert policy.host_addresses(False, False) == []


def test_rtc_configuration_is_explicit_and_empty() -> None:
    config = rtc_configuration([])
    assert config.iceServers == []


def test_rtc_configuration_converts_browser_entries() -> None:
    config = rtc_configuration(
        [
            {"urls": "stun:127.0.0.1:3478"},
            {"urls": ["turn:127.0.0.1:3478"], "username": "u", "credential": "p"},
            {"username": "no-urls"},
        ]
    )
    assert config.iceServers is not None
    assert [s.urls for s in config.iceServers] == [
        ["stun:127.0.0.1:3478"],
        ["turn:127.0.0.1:3478"],
    ]
    assert config.iceServers[1].username == "u"
    assert config.iceServers[1].credential == "p"


async def test_gathering_uses_only_policy_addresses() -> None:
    install_ice_policy(IceAddressPolicy())
    connection = aioice.ice.Connection(ice_controlling=True, use_ipv6=True)
    try:
        await connection.gather_candidates()
        hosts = {c.host for c in connection.local_candidates}
        assert hosts == {"127.0.0.1"}
    finally:
        await connection.close()


async def test_remote_candidates_outside_policy_are_refused() -> None:
    install_ice_policy(IceAddressPolicy())
    connection = aioice.ice.Connection(ice_controlling=True)
    try:
        for host in ("192.168.1.20", "abcd.local", "127.0.0.1"):
            await connection.add_remote_candidate(
                Candidate(
                    foundation="1",
                    component=1,
                    transport="udp",
                    priority=1,
                    host=host,
                    port=5000,
                    type="host",
                )
            )
        assert [c.host for c in connection.remote_candidates] == ["127.0.0.1"]
    finally:
        await connection.close()


@pytest.mark.integration
async def test_datagrams_from_disallowed_sources_are_dropped() -> None:
    # The policy allows only 127.0.0.1; a STUN request from 127.0.0.2 (another
    # loopback address, standing in for a browser's other interface) must not
    # be answered, while the same request from 127.0.0.1 is.
    install_ice_policy(IceAddressPolicy())
    connection = aioice.ice.Connection(ice_controlling=False)
    await connection.gather_candidates()
    candidate = connection.local_candidates[0]
    try:
        for source, answered in (("127.0.0.2", False), ("127.0.0.1", True)):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((source, 0))
            sock.setblocking(False)
            request = stun.Message(
                message_method=stun.Method.BINDING,
                message_class=stun.Class.REQUEST,
            )
            sock.sendto(bytes(request), (candidate.host, candidate.port))
            loop = asyncio.get_running_loop()
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 0.5)
                got = stun.parse_message(data).transaction_id == request.transaction_id
            except TimeoutError:
                got = False
            finally:
                sock.close()
            assert got is answered, source
    finally:
        await connection.close()


@pytest.mark.integration
async def test_two_peers_connect_over_loopback_only() -> None:
    install_ice_policy(IceAddressPolicy())
    offerer = RTCPeerConnection(rtc_configuration([]))
    answerer = RTCPeerConnection(rtc_configuration([]))
    try:
        offerer.createDataChannel("probe")
        await offerer.setLocalDescription(await offerer.createOffer())
        assert offerer.localDescription is not None
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        assert answerer.localDescription is not None
        await offerer.setRemoteDescription(answerer.localDescription)

        for _ in range(200):
            if offerer.connectionState == answerer.connectionState == "connected":
                break
            await asyncio.sleep(0.025)
        assert offerer.connectionState == "connected"
        assert answerer.connectionState == "connected"

        for pc in (offerer, answerer):
            sctp = pc.sctp
            assert sctp is not None
            ice = sctp.transport.transport._connection
            pair = ice._nominated[1]
            assert pair.local_candidate.host == "127.0.0.1"
            assert pair.remote_candidate.host == "127.0.0.1"
            for line in pc.localDescription.sdp.splitlines():
                if line.startswith("a=candidate:"):
                    assert " 127.0.0.1 " in line, line
    finally:
        await offerer.close()
        await answerer.close()


def test_ice_servers_outside_the_policy_are_never_used() -> None:
    # The real server's join reply lists public STUN hosts (and maybe TURN).
    servers = [
        {"urls": ["stun:stun.l.google.com:19302", "stun:127.0.0.1:3478"]},
        {
            "urls": "turn:127.0.0.3:3478?transport=udp",
            "username": "u",
            "credential": "c",
        },
        {"urls": "stun:[::1]:3478"},
        {"urls": "turns:192.0.2.7:5349"},
    ]
    policy = IceAddressPolicy(["127.0.0.1", "::1"])

    config = rtc_configuration(servers, policy)

    assert [s.urls for s in config.iceServers] == [
        ["stun:127.0.0.1:3478"],
        ["stun:[::1]:3478"],
    ]
    assert (
        rtc_configuration(servers[:1], IceAddressPolicy(["10.0.0.1"])).iceServers == []
    )


def test_ice_server_host_reads_stun_and_turn_urls() -> None:
    assert ice_server_host("stun:stun.example.org") == "stun.example.org"
    assert ice_server_host("stun:198.51.100.1:3478") == "198.51.100.1"
    assert ice_server_host("turn:[2001:db8::1]:3478?transport=tcp") == "2001:db8::1"
    assert ice_server_host("turns:turn.example.org:443?transport=tcp") == (
        "turn.example.org"
    )
    assert ice_server_host("https://example.org") is None
