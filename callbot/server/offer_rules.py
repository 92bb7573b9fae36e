"""What the real server accepts in an offer and how its answer looks (§6, §7).

Line-based SDP handling, sans-I/O: :func:`check_offer` rejects the offers
ex_webrtc 0.15 refuses (which kills the endpoint), :func:`keep_codecs` leaves
only VP8 (with its RTX) and Opus before aiortc sees the offer, and
:func:`trickle_answer` turns aiortc's complete answer into the real server's
trickle-ICE answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from callbot.server.endpoint_events import EndpointCrash

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
ACCEPTED_CODECS = {"audio": ("opus", 48000, "2"), "video": ("vp8", 90000, None)}
ENCODINGS = {"audio": "opus", "video": "VP8"}
_TWCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
# What ex_webrtc keeps when offered (§7); everything else is left out.
KEPT_FEEDBACK = {
    "audio": ("transport-cc",),
    "video": ("nack", "nack pli", "ccm fir", "transport-cc"),
}
KEPT_EXTENSIONS = {
    "audio": (
        "urn:ietf:params:rtp-hdrext:sdes:mid",
        "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        _TWCC,
    ),
    "video": (
        "urn:ietf:params:rtp-hdrext:sdes:mid",
        "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
        _TWCC,
    ),
}
_INTEGER = re.compile(r"^[0-9]+$")


@dataclass
class MediaSection:
    """One m-line of an offer, with its attribute lines."""

    index: int
    kind: str
    port: int
    formats: list[str]
    lines: list[str]
    mid: str | None = None
    direction: str = "sendrecv"
    attributes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def rejected(self) -> bool:
        return self.port == 0

    @property
    def sending(self) -> bool:
        """Whether the client sends media on this m-line."""
        return (
            not self.rejected
            and self.kind in ("audio", "video")
            and self.direction in ("sendrecv", "sendonly")
        )

    def values(self, name: str) -> list[str]:
        return self.attributes.get(name, [])


@dataclass
class Offer:
    session: list[str]
    media: list[MediaSection]

    def session_values(self, name: str) -> list[str]:
        return [v for n, v in map(_attribute, self.session) if n == name]


def _attribute(line: str) -> tuple[str, str]:
    if not line.startswith("a="):
        return "", ""
    name, _, value = line[2:].partition(":")
    return name, value


def parse(sdp: str) -> Offer:
    """Split an SDP into its session lines and media sections."""
    session: list[str] = []
    media: list[MediaSection] = []
    for line in sdp.splitlines():
        if not line:
            continue
        if line.startswith("m="):
            bits = line[2:].split()
            if len(bits) < 3 or not bits[1].split("/")[0].isdigit():
                raise EndpointCrash(f"malformed m-line {line!r}")
            media.append(
                MediaSection(
                    index=len(media),
                    kind=bits[0],
                    port=int(bits[1].split("/")[0]),
                    formats=bits[3:],
                    lines=[line],
                )
            )
            continue
        if not media:
            session.append(line)
            continue
        section = media[-1]
        section.lines.append(line)
        name, value = _attribute(line)
        if name:
            section.attributes.setdefault(name, []).append(value)
            if name in DIRECTIONS:
                section.direction = name
            elif name == "mid":
                section.mid = value
    return Offer(session, media)


def _one(section: MediaSection, offer: Offer, name: str) -> str | None:
    values = section.values(name) or offer.session_values(name)
    return values[0] if values else None


def check_offer(sdp: str) -> Offer:
    """The offer's structure as ex_webrtc requires it; violations crash."""
    offer = parse(sdp)
    if not offer.media:
        raise EndpointCrash("offer without m-lines")

    mids: list[str] = []
    for section in offer.media:
        values = section.values("mid")
        if len(values) != 1:
            raise EndpointCrash(f"m-line {section.index} needs exactly one mid")
        if values[0] in mids:
            raise EndpointCrash(f"duplicate mid {values[0]!r}")
        mids.append(values[0])

    active = [s for s in offer.media if not s.rejected]
    groups = [v for v in offer.session_values("group") if v.split()[:1] == ["BUNDLE"]]
    if len(groups) != 1:
        raise EndpointCrash("offer needs exactly one BUNDLE group")
    if sorted(groups[0].split()[1:]) != sorted(s.mid or "" for s in active):
        raise EndpointCrash("BUNDLE group does not list the non-rejected mids")

    credentials: set[tuple[str | None, str | None]] = set()
    fingerprints: set[str] = set()
    setups: set[str] = set()
    for section in active:
        if not section.values("rtcp-mux"):
            raise EndpointCrash(f"m-line {section.mid} without rtcp-mux")
        ufrag = _one(section, offer, "ice-ufrag")
        pwd = _one(section, offer, "ice-pwd")
        if not ufrag or not pwd:
            raise EndpointCrash(f"m-line {section.mid} without ICE credentials")
        credentials.add((ufrag, pwd))
        fingerprint = _one(section, offer, "fingerprint")
        if fingerprint is None:
            raise EndpointCrash(f"m-line {section.mid} without fingerprint")
        algorithm, _, value = fingerprint.partition(" ")
        if algorithm.lower() != "sha-256":
            raise EndpointCrash(f"fingerprint {algorithm!r} is not sha-256")
        fingerprints.add(value.strip().upper())
        setup = _one(section, offer, "setup")
        if setup is None:
            raise EndpointCrash(f"m-line {section.mid} without setup")
        setups.add(setup)
        if section.kind == "audio" and section.values("simulcast"):
            raise EndpointCrash("simulcast audio track")
    if len(credentials) > 1:
        raise EndpointCrash("ICE credentials differ across m-lines")
    if len(fingerprints) > 1:
        raise EndpointCrash("fingerprints differ across m-lines")
    if len(setups) > 1:
        raise EndpointCrash("setup differs across m-lines")
    return offer


def offer_candidates(sdp: str) -> list[str]:
    """The ``candidate:...`` strings embedded in an SDP."""
    return [
        line[2:].strip() for line in sdp.splitlines() if line.startswith("a=candidate:")
    ]


def foundation(candidate: str) -> str:
    """The foundation field of a ``candidate:...`` string."""
    text = candidate.strip()
    if text.startswith("a="):
        text = text[2:]
    text = text[len("candidate:") :] if text.startswith("candidate:") else text
    return text.split(" ", 1)[0]


def is_integer_foundation(candidate: str) -> bool:
    """Whether ex_ice 0.13 can parse this candidate's foundation."""
    return bool(_INTEGER.match(foundation(candidate)))


def _accepted_payload_types(section: MediaSection) -> list[str]:
    wanted = ACCEPTED_CODECS.get(section.kind)
    if wanted is None:
        return list(section.formats)
    name, rate, channels = wanted
    main: list[str] = []
    rtx: dict[str, str] = {}
    for value in section.values("rtpmap"):
        pt, _, desc = value.partition(" ")
        bits = desc.split("/")
        codec = bits[0].lower()
        if codec == name and len(bits) > 1 and bits[1] == str(rate):
            if channels is None or (len(bits) > 2 and bits[2] == channels):
                main.append(pt)
        elif codec == "rtx":
            rtx[pt] = ""
    for value in section.values("fmtp"):
        pt, _, params = value.partition(" ")
        if pt in rtx:
            match = re.search(r"apt=(\d+)", params)
            rtx[pt] = match.group(1) if match else ""
    return [
        pt for pt in section.formats if pt in main or (pt in rtx and rtx[pt] in main)
    ]


def keep_codecs(offer: Offer) -> str:
    """The offer with only what ex_webrtc keeps: VP8 (+ RTX), Opus, their
    feedback and header extensions (no ``goog-remb``, no ``abs-send-time``).

    Known limit: an audio/video m-line without any accepted codec crashes the
    endpoint here; the real server answers it rejected (port 0).
    """
    lines = list(offer.session)
    for section in offer.media:
        if section.rejected or section.kind not in ACCEPTED_CODECS:
            lines += section.lines
            continue
        keep = _accepted_payload_types(section)
        if not keep:
            raise EndpointCrash(
                f"m-line {section.mid} offers no {ENCODINGS[section.kind]}"
            )
        m_bits = section.lines[0].split()
        lines.append(" ".join(m_bits[:3] + keep))
        for line in section.lines[1:]:
            name, value = _attribute(line)
            if name in ("rtpmap", "fmtp", "rtcp-fb"):
                pt = value.split(" ", 1)[0]
                if pt != "*" and pt not in keep:
                    continue
                feedback = value.partition(" ")[2].strip()
                if name == "rtcp-fb" and feedback not in KEPT_FEEDBACK[section.kind]:
                    continue
            elif name == "extmap":
                parts = value.split()  # "<id>[/direction] <uri> [attributes]"
                if len(parts) < 2 or parts[1] not in KEPT_EXTENSIONS[section.kind]:
                    continue
            lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def trickle_answer(sdp: str) -> str:
    """The real server's answer shape: no candidates, trickle, allow-mixed."""
    answer = parse(sdp)
    lines = [*answer.session, "a=extmap-allow-mixed"]
    for section in answer.media:
        for line in section.lines:
            if not line.startswith(
                ("a=candidate:", "a=end-of-candidates", "a=ice-options:")
            ):
                lines.append(line)
        lines.append("a=ice-options:trickle")
    return "\r\n".join(lines) + "\r\n"
