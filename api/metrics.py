"""The control plane's Prometheus metrics, in the text exposition format."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from api.record import BotRecord

BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
STATUSES = ("starting", "connecting", "in_call", "leaving", "left", "failed")


class Histogram:
    """Cumulative buckets, a sum and a count."""

    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    def render(self, name: str) -> list[str]:
        lines = [
            f'{name}_bucket{{le="{bound:g}"}} {count}'
            for bound, count in zip(self.buckets, self.counts, strict=True)
        ]
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{name}_sum {self.total:.6f}")
        lines.append(f"{name}_count {self.count}")
        return lines


class Metrics:
    """Counters the app bumps, and gauges read off the records."""

    def __init__(self) -> None:
        self.starts = 0
        self.rejected: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.to_in_call = Histogram()
        self.to_first_frame = Histogram()
        self._seen_in_call: set[str] = set()
        self._seen_frame: set[str] = set()
        self._seen_failed: set[str] = set()

    def follow(self, record: BotRecord) -> None:
        """Note what a changed record reached for the first time."""
        if record.in_call_at is not None and record.bot_id not in self._seen_in_call:
            self._seen_in_call.add(record.bot_id)
            self.to_in_call.observe(record.in_call_at - record.created_at)
        if record.first_frame_at is not None and record.bot_id not in self._seen_frame:
            self._seen_frame.add(record.bot_id)
            self.to_first_frame.observe(record.first_frame_at - record.created_at)
        if record.status == "failed" and record.bot_id not in self._seen_failed:
            self._seen_failed.add(record.bot_id)
            self.failures[record.error_code or "unknown"] += 1

    def seen(self, records: Iterable[BotRecord]) -> None:
        """Bots of an earlier run: not counted again."""
        for record in records:
            if record.in_call_at is not None:
                self._seen_in_call.add(record.bot_id)
            if record.first_frame_at is not None:
                self._seen_frame.add(record.bot_id)
            if record.status == "failed":
                self._seen_failed.add(record.bot_id)

    def render(
        self,
        records: Iterable[BotRecord],
        *,
        draining: bool,
        warm: tuple[int, int] | None = None,
    ) -> str:
        """The exposition text; ``warm``: (ready, starting) warm workers."""
        records = list(records)
        by_status: Counter[str] = Counter(r.status for r in records)
        media: Counter[tuple[str, str, str]] = Counter()
        for record in records:
            for track in record.tracks:
                media[(track.direction, track.kind, "frames")] += track.frames
                media[(track.direction, track.kind, "bytes")] += track.bytes

        out = [
            "# HELP callbot_bots Bots known to the control plane, by status.",
            "# TYPE callbot_bots gauge",
        ]
        out += [f'callbot_bots{{status="{s}"}} {by_status.get(s, 0)}' for s in STATUSES]
        out += [
            "# HELP callbot_bot_starts_total Bots started by this process.",
            "# TYPE callbot_bot_starts_total counter",
            f"callbot_bot_starts_total {self.starts}",
            "# HELP callbot_bot_failures_total Bots that failed, by error code.",
            "# TYPE callbot_bot_failures_total counter",
        ]
        out += [
            f'callbot_bot_failures_total{{code="{code}"}} {n}'
            for code, n in sorted(self.failures.items())
        ]
        out += [
            "# HELP callbot_bot_rejections_total POST /bots refused, by error code.",
            "# TYPE callbot_bot_rejections_total counter",
        ]
        out += [
            f'callbot_bot_rejections_total{{code="{code}"}} {n}'
            for code, n in sorted(self.rejected.items())
        ]
        out += [
            "# HELP callbot_time_to_in_call_seconds From POST /bots to in_call.",
            "# TYPE callbot_time_to_in_call_seconds histogram",
            *self.to_in_call.render("callbot_time_to_in_call_seconds"),
            "# HELP callbot_time_to_first_frame_seconds From POST /bots to the"
            " first remote frame.",
            "# TYPE callbot_time_to_first_frame_seconds histogram",
            *self.to_first_frame.render("callbot_time_to_first_frame_seconds"),
            "# HELP callbot_media_frames Frames the bots sent and received.",
            "# TYPE callbot_media_frames gauge",
        ]
        out += [
            f'callbot_media_frames{{direction="{d}",kind="{k}"}} {n}'
            for (d, k, what), n in sorted(media.items())
            if what == "frames"
        ]
        out += [
            "# HELP callbot_media_bytes Bytes the bots sent and received.",
            "# TYPE callbot_media_bytes gauge",
        ]
        out += [
            f'callbot_media_bytes{{direction="{d}",kind="{k}"}} {n}'
            for (d, k, what), n in sorted(media.items())
            if what == "bytes"
        ]
        out += [
            "# HELP callbot_draining 1 while the control plane drains.",
            "# TYPE callbot_draining gauge",
            f"callbot_draining {int(draining)}",
        ]
        if warm is not None:
            out += [
                "# HELP callbot_warm_workers Warm bot workers waiting for a bot.",
                "# TYPE callbot_warm_workers gauge",
                f'callbot_warm_workers{{state="ready"}} {warm[0]}',
                f'callbot_warm_workers{{state="starting"}} {warm[1]}',
            ]
        return "\n".join(out) + "\n"
