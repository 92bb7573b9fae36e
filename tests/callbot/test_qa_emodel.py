"""The E-model's MOS estimate at known points."""

from __future__ import annotations

import pytest

from callbot.qa.emodel import delay_impairment, estimate, mos_from_r


def test_no_delay_no_loss_is_the_e_model_default_of_about_4_4() -> None:
    result = estimate(0.0, 0.0)
    assert result.r == pytest.approx(93.2)
    assert result.mos == pytest.approx(4.41, abs=0.01)


def test_delay_costs_little_below_177_ms_and_much_more_above() -> None:
    assert delay_impairment(150) == pytest.approx(3.6)
    assert delay_impairment(300) == pytest.approx(7.2 + 0.11 * 122.7)
    assert estimate(400, 0.0).mos < estimate(150, 0.0).mos - 0.3


def test_five_percent_random_loss_with_plc() -> None:
    result = estimate(0.0, 0.05)
    assert result.ie_eff == pytest.approx(95 * 5 / (5 + 25.1))
    assert result.mos == pytest.approx(mos_from_r(93.2 - 95 * 5 / 30.1))
    assert 3.5 < result.mos < 4.0


def test_mos_is_clamped_to_1_and_4_5() -> None:
    assert mos_from_r(-5) == 1.0
    assert mos_from_r(120) == 4.5
