"""Voice activity of a published audio track, from the RTP audio levels.

The real server (the ExWebRTC endpoint of Membrane's RTC engine) runs one
detector per inbound audio track over the ``ssrc-audio-level`` header
extension (RFC 6464) and sends ``vadNotification`` to the endpoints receiving
that track whenever its status flips. The estimate is Membrane's speaking
estimator, after Volfin and Cohen's dominant speaker identification: the
levels of the newest 70 packets are read on three tiers, each with an
activity score that must clear its threshold.

- *immediate*: one packet, active when its level is at or above the
  threshold (-32 dBov);
- *medium*: ten immediates (about 200 ms), active when at least one of them is;
- *long*: seven mediums (about 1.4 s), active when at least three of them are.

The newest interval of each tier is scored as
``ln C(n, k) + k ln p + (n - k) ln(1 - p) - ln lambda + lambda k`` with
``p = 0.5`` (``k`` active subunits out of ``n``), floored at ``1e-8``, and
speech is when every tier's score is above its threshold. With the real
parameters this comes to: at least 2 of the newest 10 packets at or above the
threshold, and at least one of the newest seven groups of ten packets with 3
or more such packets. Fewer than 70 levels are always silence.

A packet without the extension changes nothing, so a publisher that sends no
audio levels never speaks. Nothing here reads a clock or a socket: the caller
passes each packet's RTP timestamp and level in.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

VadStatus = Literal["speech", "silence"]

THRESHOLD_DBOV = -32
"""The real endpoint's threshold: a packet at or above it is active."""

DIGITAL_SILENCE_DBOV = -127

# Below this an activity score counts as this (the log of zero is undefined).
_MIN_SCORE = 1.0e-8
# The probability of an active subunit while someone speaks.
_P_SPEECH = 0.5


@dataclass(frozen=True)
class Tier:
    """One tier of the speaking estimator."""

    subunits: int
    """How many subunits (lower-tier intervals, or packets) make one interval."""
    score_threshold: float
    """The activity score must be above this for the tier to indicate speech."""
    subunit_threshold: int
    """A subunit is active from this many active parts on (packets: unused)."""
    lambda_: float
    """The exponential distribution's parameter for the not-speaking case."""


@dataclass(frozen=True)
class EstimatorParams:
    """The three tiers; the defaults are Membrane's ``vad_estimation_parameters``."""

    immediate: Tier = Tier(1, 0.0, 1, 1.0)
    medium: Tier = Tier(10, 20.0, 1, 24.0)
    long: Tier = Tier(7, 20.0, 3, 47.0)

    @property
    def levels_needed(self) -> int:
        """How many levels one estimate reads: one long interval."""
        return self.immediate.subunits * self.medium.subunits * self.long.subunits


MEMBRANE_PARAMS = EstimatorParams()


def activity_score(active: int, tier: Tier) -> float:
    """The log-likelihood ratio of speech to no speech for one interval."""
    n = tier.subunits
    score = (
        math.log(math.comb(n, active))
        + active * math.log(_P_SPEECH)
        + (n - active) * math.log(1 - _P_SPEECH)
        - math.log(tier.lambda_)
        + tier.lambda_ * active
    )
    return max(score, _MIN_SCORE)


def _intervals(parts: Sequence[int], size: int, threshold: int) -> list[int]:
    """Active parts of each interval of ``size`` parts, newest interval first."""
    return [
        sum(1 for part in parts[start : start + size] if part >= threshold)
        for start in range(0, len(parts), size)
    ]


def estimate_speech(
    levels: Iterable[int],
    threshold_dbov: int = THRESHOLD_DBOV,
    params: EstimatorParams = MEMBRANE_PARAMS,
) -> bool:
    """Whether ``levels`` (dBov, newest first) are speech.

    Only the newest ``params.levels_needed`` levels are read; fewer are silence.
    """
    needed = params.levels_needed
    newest = list(itertools.islice(levels, needed))
    if len(newest) < needed:
        return False
    immediates = _intervals(newest, params.immediate.subunits, threshold_dbov)
    mediums = _intervals(
        immediates, params.medium.subunits, params.medium.subunit_threshold
    )
    longs = _intervals(mediums, params.long.subunits, params.long.subunit_threshold)
    return (
        activity_score(immediates[0], params.immediate)
        > params.immediate.score_threshold
        and activity_score(mediums[0], params.medium) > params.medium.score_threshold
        and activity_score(longs[0], params.long) > params.long.score_threshold
    )


class VoiceActivityDetector:
    """The speech/silence status of one audio track, fed packet by packet.

    Starts in silence; :meth:`update` returns the new status when it changes.
    """

    def __init__(
        self,
        threshold_dbov: int = THRESHOLD_DBOV,
        params: EstimatorParams = MEMBRANE_PARAMS,
    ) -> None:
        self.threshold_dbov = threshold_dbov
        self.params = params
        self.status: VadStatus = "silence"
        self.packets = 0
        """Packets whose level was read."""
        self.changed_at: int | None = None
        """The timestamp passed with the packet of the last change."""
        self._levels: deque[int] = deque(maxlen=params.levels_needed)

    def update(self, timestamp: int, level_dbov: int | None) -> VadStatus | None:
        """Read one packet's level; the new status if it changed, else ``None``.

        Args:
            timestamp: the packet's RTP timestamp (or its arrival time).
            level_dbov: the audio level in dBov, -127 (digital silence) to 0;
                ``None`` when the packet has no audio-level extension.
        """
        if level_dbov is None:
            return None
        # The real endpoint checks timestamps for wrap-around against a last
        # timestamp it never records, so the check only ever drops timestamp 0.
        # Packets count in arrival order, duplicates and reordering included.
        if timestamp == 0:
            return None
        level = min(max(level_dbov, DIGITAL_SILENCE_DBOV), 0)
        self._levels.appendleft(level)
        self.packets += 1
        speech = estimate_speech(self._levels, self.threshold_dbov, self.params)
        status: VadStatus = "speech" if speech else "silence"
        if status == self.status:
            return None
        self.status = status
        self.changed_at = timestamp
        return status
