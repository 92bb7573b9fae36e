"""What each overlay widget shows and where: position, size, colours, data."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


def bgr(colour: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` as an OpenCV BGR tuple."""
    value = int(colour[1:], 16)
    return value & 0xFF, (value >> 8) & 0xFF, (value >> 16) & 0xFF


class _Widget(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    x: int = Field(default=16, ge=0)
    y: int = Field(default=16, ge=0)
    width: int = Field(default=200, ge=8)
    height: int = Field(default=64, ge=8)
    colour: str = "#33ff66"
    background: str | None = "#000000"
    # 0 = background invisible, 1 = opaque.
    background_opacity: float = Field(default=0.6, ge=0.0, le=1.0)
    stale_colour: str = "#808080"

    @field_validator("colour", "stale_colour", "background")
    @classmethod
    def _hex_colour(cls, value: str | None) -> str | None:
        if value is not None and not _HEX.match(value):
            raise ValueError(f"colour {value!r} is not #rrggbb")
        return value


class _SensorWidget(_Widget):
    sensor_id: str
    attribute_id: str
    # Older than this, the data is drawn grey with its age.
    stale_after: float = Field(default=3.0, gt=0.0)


class BadgeConfig(_SensorWidget):
    """A value with a trend arrow, e.g. heart rate in bpm."""

    kind: Literal["badge"] = "badge"
    attribute_id: str = "heartrate"
    unit: str = "bpm"
    decimals: int = Field(default=0, ge=0, le=3)
    # The arrow compares the newest value with the one this long before.
    trend_seconds: float = Field(default=10.0, gt=0.0)
    trend_threshold: float = Field(default=2.0, ge=0.0)


class WaveformConfig(_SensorWidget):
    """A scrolling strip at paper speed, newest sample at the right edge."""

    kind: Literal["waveform"] = "waveform"
    attribute_id: str = "ecg"
    width: int = Field(default=400, ge=8)
    height: int = Field(default=100, ge=8)
    # Nearly opaque, so that the trace stands out from any picture.
    background_opacity: float = Field(default=0.85, ge=0.0, le=1.0)
    paper_speed_mm_s: float = Field(default=25.0, gt=0.0)
    pixels_per_mm: float = Field(default=4.0, gt=0.0)
    # Fixed vertical range; ``None`` fits the visible samples.
    min_value: float | None = -0.6
    max_value: float | None = 1.4
    # The right edge shows this long ago, so batched data arrives in time.
    delay_ms: int = Field(default=150, ge=0)
    grid: bool = True

    @property
    def pixels_per_second(self) -> float:
        return self.paper_speed_mm_s * self.pixels_per_mm


class SparklineConfig(_SensorWidget):
    """The last ``seconds`` of an attribute, fitted to the box (respiration)."""

    kind: Literal["sparkline"] = "sparkline"
    attribute_id: str = "respiration"
    width: int = Field(default=160, ge=8)
    height: int = Field(default=40, ge=8)
    seconds: float = Field(default=30.0, gt=0.0)


class LabelConfig(_Widget):
    """Fixed text."""

    kind: Literal["label"] = "label"
    text: str
    height: int = Field(default=28, ge=8)
    colour: str = "#ffffff"


WidgetConfig = Annotated[
    BadgeConfig | WaveformConfig | SparklineConfig | LabelConfig,
    Field(discriminator="kind"),
]


class OverlayConfig(BaseModel):
    """The widgets drawn onto one video, in drawing order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    widgets: list[WidgetConfig] = Field(default_factory=list)
    # How much history is kept for the widgets (the longest window wins).
    history_seconds: float = Field(default=60.0, gt=0.0)

    @classmethod
    def vitals(cls, sensor_id: str) -> OverlayConfig:
        """Heart-rate badge, ECG strip and respiration sparkline for one sensor."""
        return cls(
            widgets=[
                BadgeConfig(sensor_id=sensor_id, x=16, y=16, width=220, height=64),
                SparklineConfig(sensor_id=sensor_id, x=464, y=16),
                WaveformConfig(sensor_id=sensor_id, x=16, y=270, width=608),
                LabelConfig(text=sensor_id, x=464, y=64, width=160),
            ]
        )
