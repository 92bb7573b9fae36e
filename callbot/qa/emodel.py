"""An audio MOS estimate from the ITU-T G.107 E-model (sans-I/O).

The transmission rating factor, with G.107's default values for everything
but delay and packet loss:

    R = Ro - Is - Id - Ie,eff + A
    Ro - Is = 93.2                       (G.107 defaults: 94.77 - 1.43, rounded
                                          as in G.107's own planning examples)
    A       = 0                          (no advantage of access)
    Id      = 0.024 Ta + 0.11 (Ta - 177.3) H(Ta - 177.3)
                                         Ta: mouth-to-ear delay in ms, H the
                                         step function; the usual closed-form
                                         fit of G.107's Idd with default echo
                                         (Cole & Rosenbluth, 2001)
    Ie,eff  = Ie + (95 - Ie) Ppl / (Ppl / BurstR + Bpl)
                                         Ppl: packet loss in percent

Opus has no entry in ITU-T G.113; we take Ie = 0 (transparent at the bit
rates used here) and the G.113 loss robustness of a codec with packet loss
concealment, Bpl = 25.1 (G.711 with PLC), and BurstR = 1 (random loss).
R maps to MOS (conversational quality, estimated) by

    MOS = 1                                           R <= 0
    MOS = 1 + 0.035 R + R (R - 60) (100 - R) 7e-6      0 < R < 100
    MOS = 4.5                                         R >= 100
"""

from __future__ import annotations

from dataclasses import dataclass

RO_MINUS_IS = 93.2
OPUS_IE = 0.0
OPUS_BPL = 25.1


@dataclass(frozen=True)
class EModelResult:
    """An E-model estimate and what it was made from."""

    r: float
    mos: float
    delay_ms: float
    loss: float
    id: float
    ie_eff: float


def delay_impairment(delay_ms: float) -> float:
    """Id for a mouth-to-ear delay of ``delay_ms``."""
    d = max(0.0, delay_ms)
    return 0.024 * d + (0.11 * (d - 177.3) if d > 177.3 else 0.0)


def effective_equipment_impairment(
    loss: float, ie: float = OPUS_IE, bpl: float = OPUS_BPL, burst_r: float = 1.0
) -> float:
    """Ie,eff for a packet loss share ``loss`` (0..1)."""
    ppl = max(0.0, min(1.0, loss)) * 100
    return ie + (95 - ie) * ppl / (ppl / burst_r + bpl)


def mos_from_r(r: float) -> float:
    """G.107's mapping of the rating factor R to an estimated MOS."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6


def estimate(
    delay_ms: float,
    loss: float,
    *,
    ie: float = OPUS_IE,
    bpl: float = OPUS_BPL,
    burst_r: float = 1.0,
) -> EModelResult:
    """R and MOS for a mouth-to-ear delay (ms) and a packet loss share."""
    id_ = delay_impairment(delay_ms)
    ie_eff = effective_equipment_impairment(loss, ie, bpl, burst_r)
    r = RO_MINUS_IS - id_ - ie_eff
    return EModelResult(r, mos_from_r(r), delay_ms, loss, id_, ie_eff)
