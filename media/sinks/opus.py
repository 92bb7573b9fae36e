"""What an Opus packet's TOC byte says about its length (RFC 6716 §3.1)."""

from __future__ import annotations

# Frame length in units of 1/400 s (2.5 ms) for each of the 32 configurations.
_FRAME_UNITS = (
    *(4, 8, 16, 24) * 3,  # SILK: 10, 20, 40, 60 ms
    *(4, 8) * 2,  # hybrid: 10, 20 ms
    *(1, 2, 4, 8) * 4,  # CELT: 2.5, 5, 10, 20 ms
)


def opus_packet_samples(packet: bytes, sample_rate: int = 48000) -> int:
    """Samples per channel in one Opus packet; 0 if it cannot be parsed."""
    if not packet:
        return 0
    toc = packet[0]
    code = toc & 0x03
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        if len(packet) < 2:
            return 0
        frames = packet[1] & 0x3F
    return frames * _FRAME_UNITS[toc >> 3] * sample_rate // 400
