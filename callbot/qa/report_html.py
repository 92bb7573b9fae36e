"""A QA report as one self-contained HTML page with inline SVG plots."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from callbot.qa.verdict import bound

WIDTH, HEIGHT = 720, 220
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 60, 160, 28, 32
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
TIER_COLOURS = {
    "active": "#2ca02c",
    "recent": "#98df8a",
    "viewer": "#ffbb78",
    "idle": "#c7c7c7",
}

Series = tuple[str, Sequence[tuple[float, float]]]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10.0 ** len(str(int(value))) / 10
    for factor in (1, 2, 2.5, 5, 10):
        if value <= step * factor:
            return step * factor
    return value


def line_chart(title: str, unit: str, series: Sequence[Series], span: float) -> str:
    """An SVG line chart of ``series`` (label, [(t, y)]) over 0..``span`` s."""
    esc = html.escape
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    values = [y for _, points in series for _, y in points]
    top = _nice_max(max(values, default=0.0))
    span = max(span, 1.0)

    def x(t: float) -> float:
        return MARGIN_LEFT + plot_w * min(max(t, 0.0), span) / span

    def y(v: float) -> float:
        return MARGIN_TOP + plot_h * (1 - min(max(v, 0.0), top) / top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}"'
        f' role="img" aria-label="{esc(title)}">',
        f'<text x="{MARGIN_LEFT}" y="18" font-weight="bold">{esc(title)}</text>',
    ]
    for i in range(5):
        value = top * i / 4
        py = y(value)
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{MARGIN_LEFT + plot_w}" y1="{py:.1f}"'
            f' y2="{py:.1f}" stroke="#ddd"/>'
            f'<text x="{MARGIN_LEFT - 6}" y="{py + 4:.1f}" text-anchor="end"'
            f' font-size="11">{value:g}</text>'
        )
    for i in range(6):
        t = span * i / 5
        parts.append(
            f'<text x="{x(t):.1f}" y="{HEIGHT - 12}" text-anchor="middle"'
            f' font-size="11">{t:.0f} s</text>'
        )
    parts.append(
        f'<text x="12" y="{MARGIN_TOP + plot_h / 2:.0f}" font-size="11"'
        f' transform="rotate(-90 12 {MARGIN_TOP + plot_h / 2:.0f})"'
        f' text-anchor="middle">{esc(unit)}</text>'
    )
    for index, (label, points) in enumerate(series):
        colour = COLOURS[index % len(COLOURS)]
        if points:
            path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.5"'
                f' points="{path}"/>'
            )
        ly = MARGIN_TOP + 14 * index + 8
        lx = WIDTH - MARGIN_RIGHT + 10
        parts.append(
            f'<rect x="{lx}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="{ly + 1}" font-size="11">{esc(label[:22])}</text>'
        )
    if not values:
        parts.append(
            f'<text x="{MARGIN_LEFT + plot_w / 2}" y="{MARGIN_TOP + plot_h / 2}"'
            ' text-anchor="middle" fill="#888">not measured</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def tier_chart(participants: Sequence[dict[str, Any]], span: float) -> str:
    """One bar per participant, coloured by tier over time."""
    esc = html.escape
    span = max(span, 1.0)
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    row = 22
    height = MARGIN_TOP + row * max(1, len(participants)) + MARGIN_BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}"'
        ' role="img" aria-label="tier timeline">',
        f'<text x="{MARGIN_LEFT}" y="18" font-weight="bold">Tier timeline</text>',
    ]
    for i, participant in enumerate(participants):
        top = MARGIN_TOP + row * i
        parts.append(
            f'<text x="{MARGIN_LEFT - 6}" y="{top + 14}" text-anchor="end"'
            f' font-size="11">{esc(str(participant["user_id"])[:10])}</text>'
        )
        for segment in participant.get("tiers", []):
            x0 = MARGIN_LEFT + plot_w * min(segment["start"], span) / span
            x1 = MARGIN_LEFT + plot_w * min(segment["end"], span) / span
            colour = TIER_COLOURS.get(segment["tier"], "#888")
            parts.append(
                f'<rect x="{x0:.1f}" y="{top + 2}" width="{max(0.5, x1 - x0):.1f}"'
                f' height="{row - 6}" fill="{colour}">'
                f"<title>{esc(segment['tier'])}</title></rect>"
            )
    for j, (tier, colour) in enumerate(TIER_COLOURS.items()):
        lx = WIDTH - MARGIN_RIGHT + 10
        ly = MARGIN_TOP + 14 * j + 8
        parts.append(
            f'<rect x="{lx}" y="{ly - 8}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="{ly + 1}" font-size="11">{tier}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _check_row(check: dict[str, Any]) -> str:
    esc = html.escape
    passed = check["passed"]
    state = "ok" if passed else ("na" if passed is None else "bad")
    word = "pass" if passed else ("n/a" if passed is None else "FAIL")
    value = "" if check["value"] is None else f"{check['value']:g}"
    return (
        f'<tr class="{state}"><td>{esc(check["name"])}</td>'
        f"<td>{esc(check['subject'])}</td><td>{value} {esc(check['unit'])}</td>"
        f"<td>{esc(bound(check))}</td><td>{word}</td></tr>"
    )


def _label(track: dict[str, Any]) -> str:
    return f"{track['user_id']} {track['kind']}"


def render(report: dict[str, Any]) -> str:
    """The whole report page."""
    esc = html.escape
    span = float(report.get("duration") or 1.0)
    tracks = report.get("tracks", [])
    video = [t for t in tracks if t["kind"] == "video"]
    fps = [
        (_label(t), [(p["at"], p["fps"]) for p in t.get("fps_series", [])])
        for t in video
    ]
    bitrate = [
        (_label(t), [(p["at"], p["bitrate"] / 1000) for p in t["wire_series"][1:]])
        for t in tracks
    ]
    jitter = [
        (_label(t), [(p["at"], p["jitter_ms"]) for p in t["wire_series"]])
        for t in tracks
    ]
    latency = [
        (_label(t), [(p["at"], p["latency_ms"]) for p in t.get("latency_series", [])])
        for t in tracks
    ]
    passed = report.get("passed")
    rows = "".join(_check_row(c) for c in report.get("checks", []))
    people = "".join(
        f"<tr><td>{esc(str(p['user_id']))}</td>"
        f"<td>{p['join'].get('joined_at')}</td>"
        f"<td>{p['join'].get('first_frame_at')}</td>"
        f"<td>{p.get('av_offset_ms')}</td>"
        f"<td>{(p.get('mos') or {}).get('mos')}</td>"
        f"<td>{p.get('snapshot_rate_while_viewer')}</td>"
        f"<td>{p['speaking'].get('agreement')}</td></tr>"
        for p in report.get("participants", [])
    )
    room = esc(str(report.get("room_id", "")))
    colour = "#2a2" if passed else "#c22"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>callbot QA {room}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; }}
table {{ border-collapse: collapse; margin: 12px 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; font-size: 13px; }}
tr.bad td {{ background: #fdd; }} tr.na td {{ color: #888; }}
.verdict {{ font-size: 20px; font-weight: bold; color: {colour}; }}
</style></head><body>
<h1>Call QA: room {esc(str(report.get("room_id")))}</h1>
<p class="verdict">{"PASS" if passed else "FAIL"}</p>
<p>{span:.1f} s measured by {esc(str(report.get("user_id")))}.
{esc(str(report.get("clock_note", "")))}</p>
<h2>Checks</h2>
<table><tr><th>check</th><th>subject</th><th>value</th><th>limit</th><th></th></tr>
{rows}</table>
<h2>Participants</h2>
<table><tr><th>user</th><th>joined at (s)</th><th>first frame at (s)</th>
<th>A/V offset (ms)</th><th>MOS</th><th>snapshots/s as viewer</th>
<th>speaking agreement</th></tr>{people}</table>
{line_chart("Frame rate", "fps", fps, span)}
{line_chart("Bitrate", "kbit/s", bitrate, span)}
{line_chart("Jitter", "ms", jitter, span)}
{line_chart("Glass-to-glass latency", "ms", latency, span)}
{tier_chart(report.get("participants", []), span)}
</body></html>
"""
