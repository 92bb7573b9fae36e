from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from callbot.logtext import RepeatLimiter, clip, validation_summary


def test_clip_shortens_long_text_and_says_how_much_is_missing() -> None:
    text = clip("u" * 5_000_000)
    assert text == "u" * 200 + "…(+4999800 chars)"


def test_clip_escapes_nul_and_line_breaks() -> None:
    assert clip("a\x00b\nc\u2028d") == "a\\x00b\\nc\\u2028d"
    assert clip("Zoë") == "Zoë"
    assert clip(b"\x00" * 300, limit=4) == "\\x00\\x00\\x00\\x00…(+296 chars)"


def test_validation_summary_is_one_short_line() -> None:
    class Model(BaseModel):
        user_id: str
        width: int

    with pytest.raises(ValidationError) as info:
        Model.model_validate({"user_id": 5, "width": "x" * 10_000})
    summary = validation_summary(info.value)
    assert "\n" not in summary
    assert summary.startswith("user_id: Input should be a valid string; width:")
    assert len(summary) <= 220


def test_repeat_limiter_lets_one_through_per_interval_and_counts_the_rest() -> None:
    limiter = RepeatLimiter(interval=10.0)
    assert limiter.allow("bad media event", 0.0) == 0
    assert [limiter.allow("bad media event", t) for t in (1.0, 2.0, 9.9)] == [
        None,
        None,
        None,
    ]
    assert limiter.allow("other", 5.0) == 0
    assert limiter.allow("bad media event", 10.0) == 3
    assert limiter.allow("bad media event", 10.5) is None


def test_repeat_limiter_keeps_a_bounded_table() -> None:
    limiter = RepeatLimiter(interval=10.0, max_keys=3)
    for i in range(100):
        assert limiter.allow(f"key {i}", float(i) / 100) == 0
    assert len(limiter._last) == 3
