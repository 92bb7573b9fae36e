"""The bot's aiortc peer connection: transceivers, offer, answer, candidates.

Thin I/O around aiortc; what to do when is decided by
:class:`callbot.rtc.negotiation.ClientNegotiation`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from callbot.rtc.icepolicy import IceAddressPolicy, rtc_configuration

logger = logging.getLogger(__name__)

Log = logging.Logger | logging.LoggerAdapter[logging.Logger]

# The real server accepts only these (membrane-media-events.md §7).
_CODECS = {"audio": ("audio/opus",), "video": ("video/VP8", "video/rtx")}


def _preferred_codecs(kind: str, direction: str) -> list[Any]:
    caps = (
        RTCRtpSender.getCapabilities(kind)
        if direction == "sendonly"
        else RTCRtpReceiver.getCapabilities(kind)
    )
    codecs = caps.codecs if caps is not None else []
    return [c for c in codecs if c.mimeType in _CODECS[kind]]


class BotPeer:
    """One ``RTCPeerConnection`` of the bot, for one endpoint."""

    def __init__(
        self,
        ice_servers: list[dict[str, Any]],
        policy: IceAddressPolicy,
        *,
        on_track: Callable[[RTCRtpTransceiver, MediaStreamTrack], None],
        log: Log | None = None,
    ) -> None:
        configuration = rtc_configuration(ice_servers, policy)
        # One transport for all m-lines, like the browser library. With aiortc's
        # default (balanced) a second m-line of a kind stays on a transport that
        # the answer's BUNDLE discards, and receives nothing.
        configuration.bundlePolicy = RTCBundlePolicy.MAX_BUNDLE
        self.pc = RTCPeerConnection(configuration)
        self.policy = policy
        self._log: Log = log or logger
        self._on_track = on_track
        self.pc.on("track", self._handle_track)
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.received_candidates: list[str] = []

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)

    def add_sendonly(self, track: MediaStreamTrack) -> RTCRtpTransceiver:
        transceiver = self.pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(_preferred_codecs(track.kind, "sendonly"))
        return transceiver

    def add_recvonly(self, kind: str) -> RTCRtpTransceiver:
        transceiver = self.pc.addTransceiver(kind, direction="recvonly")
        transceiver.setCodecPreferences(_preferred_codecs(kind, "recvonly"))
        return transceiver

    async def create_offer(self) -> str:
        """Create and set the local offer; its SDP carries the gathered candidates."""
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        return str(self.pc.localDescription.sdp)

    async def apply_answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(
            RTCSessionDescription(sdp=sdp, type="answer")
        )

    async def add_remote_candidate(
        self, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> bool:
        """Add a remote candidate the address policy allows; False if dropped."""
        if not self.policy.accepts_remote_candidate(candidate):
            self._log.info(
                "remote candidate outside the ICE policy dropped: %s", candidate
            )
            return False
        parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
        parsed.sdpMid = sdp_mid
        parsed.sdpMLineIndex = sdp_mline_index
        await self.pc.addIceCandidate(parsed)
        self.received_candidates.append(candidate)
        return True

    def selected_pairs(self) -> list[tuple[str, str]]:
        """``(local, remote)`` ``host:port`` of every nominated ICE candidate pair."""
        pairs: list[tuple[str, str]] = []
        seen: set[int] = set()
        for transceiver in self.pc.getTransceivers():
            ice = transceiver.sender.transport.transport
            connection = getattr(ice, "_connection", None)
            if connection is None or id(connection) in seen:
                continue
            seen.add(id(connection))
            for pair in getattr(connection, "_nominated", {}).values():
                local, remote = pair.local_candidate, pair.remote_candidate
                pairs.append(
                    (f"{local.host}:{local.port}", f"{remote.host}:{remote.port}")
                )
        return pairs

    async def close(self, timeout: float = 1.0) -> None:
        """Close the peer connection, giving up waiting after ``timeout``."""
        try:
            await asyncio.wait_for(self.pc.close(), timeout)
        except TimeoutError:
            self._log.warning("peer connection did not close within %.1f s", timeout)

    def _handle_track(self, track: MediaStreamTrack) -> None:
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track:
                self._on_track(transceiver, track)
                return
        self._log.warning("remote %s track without a transceiver ignored", track.kind)

    def _on_connection_state(self) -> None:
        self._log.info("peer connection %s", self.pc.connectionState)
