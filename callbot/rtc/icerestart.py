"""ICE restart for aiortc as the answerer (pinned to aiortc 1.16.0, aioice 0.13.0).

The browser client restarts ICE on every negotiation round after the first: each
later offer carries a new ufrag and pwd. Stock aiortc cannot follow. Its
``RTCIceTransport.start`` runs once, so the new credentials never reach aioice;
aioice then answers the new generation's checks with 401, because
``Connection._valid_username`` compares with the first remote ufrag; and the
answer repeats the old local credentials. The call survives only while the
browser keeps its old candidate pair.

:func:`prepare_ice_restart`, called before ``setRemoteDescription`` applies an
offer, detects changed credentials and updates the live aioice connection in
place: the new remote ufrag and pwd (so the new generation's checks
authenticate and its pair is nominated through aioice's incoming-check path)
and fresh local credentials (JSEP: the answer to an ICE restart carries new
ones). The sockets, candidates and the DTLS transport are left as they are;
media keeps flowing on the old pair until the new one is nominated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib.metadata import version

import aioice.ice
from aioice.utils import random_string
from aiortc import RTCPeerConnection, RTCSessionDescription, sdp
from aiortc.rtcicetransport import RTCIceGatherer, RTCIceTransport

logger = logging.getLogger(__name__)

PINNED = {"aiortc": "1.16.0", "aioice": "0.13.0"}
for _package, _pinned in PINNED.items():
    if version(_package) != _pinned:
        raise ImportError(
            f"callbot.rtc.icerestart extends {_package} {_pinned} internals, "
            f"found {version(_package)}"
        )


@dataclass(frozen=True)
class IceRestart:
    """One restart of a live ICE connection (credentials before and after)."""

    old_remote_ufrag: str
    new_remote_ufrag: str
    old_local_ufrag: str
    new_local_ufrag: str


def _live_transports(pc: RTCPeerConnection) -> dict[RTCIceTransport, str | None]:
    """The started ICE transports of ``pc``, each with the mid of its first user."""
    transports: dict[RTCIceTransport, str | None] = {}
    for transceiver in pc.getTransceivers():
        ice = transceiver.receiver.transport.transport
        if ice.state != "closed" and ice not in transports:
            transports[ice] = transceiver.mid
    sctp = pc.sctp
    if sctp is not None:
        ice = sctp.transport.transport
        if ice.state != "closed" and ice not in transports:
            transports[ice] = sctp.mid
    return {
        ice: mid
        for ice, mid in transports.items()
        if ice._connection.remote_username is not None
    }


def _offered_credentials(
    description: sdp.SessionDescription, mid: str | None
) -> tuple[str, str] | None:
    for media in description.media:
        if mid is not None and media.rtp.muxId != mid:
            continue
        ice = media.ice
        if ice is not None and ice.usernameFragment and ice.password:
            return ice.usernameFragment, ice.password
        return None
    return None


def restart_connection(
    connection: aioice.ice.Connection,
    gatherer: RTCIceGatherer,
    remote_ufrag: str,
    remote_pwd: str,
) -> IceRestart:
    """Give a live aioice connection new remote and fresh local credentials."""
    restart = IceRestart(
        old_remote_ufrag=connection.remote_username or "",
        new_remote_ufrag=remote_ufrag,
        old_local_ufrag=connection.local_username,
        new_local_ufrag=random_string(4),
    )
    connection.remote_username = remote_ufrag
    connection.remote_password = remote_pwd
    # aioice exposes the local credentials read-only; the answer and every
    # check from now on use the new ones.
    connection._local_username = restart.new_local_ufrag
    connection._local_password = random_string(22)

    # A restart starts a new generation of remote candidates, so an earlier
    # end-of-candidates no longer applies (RFC 8838 section 4.4).
    connection._remote_candidates_end = False
    gatherer._remote_candidates_end = False
    return restart


def prepare_ice_restart(
    pc: RTCPeerConnection, offer: RTCSessionDescription
) -> list[IceRestart]:
    """Restart ICE for ``offer`` if its credentials differ from the live ones.

    Call it right before ``pc.setRemoteDescription(offer)``. It does nothing for
    a first offer, an answer, or an offer with unchanged credentials, and
    returns the restarts it made (one per live ICE transport; with BUNDLE,
    at most one).
    """
    if offer.type != "offer":
        return []
    live = _live_transports(pc)
    if not live:
        return []

    description = sdp.SessionDescription.parse(offer.sdp)
    restarts: list[IceRestart] = []
    for ice, mid in live.items():
        offered = _offered_credentials(description, mid)
        if offered is None:
            continue
        connection = ice._connection
        ufrag, pwd = offered
        if (ufrag, pwd) == (connection.remote_username, connection.remote_password):
            continue
        restart = restart_connection(connection, ice.iceGatherer, ufrag, pwd)
        logger.info(
            "ICE restart on mid %s: remote ufrag %s -> %s, local ufrag %s -> %s",
            mid,
            restart.old_remote_ufrag,
            restart.new_remote_ufrag,
            restart.old_local_ufrag,
            restart.new_local_ufrag,
        )
        restarts.append(restart)
    return restarts
