"""The local-process launcher, driving a stand-in worker that speaks the reports."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from api import requestid
from api.launcher import LaunchError, LocalProcessLauncher
from api.record import BotRecord

FAKE_WORKER = str(Path(__file__).with_name("fake_worker.py"))
READY_WORKER = str(Path(__file__).with_name("ready_worker.py"))

pytestmark = pytest.mark.integration


def make_record(bot_id: str = "b-1") -> BotRecord:
    return BotRecord(
        bot_id,
        server_url="ws://127.0.0.1:9/socket",
        room_id="lobby",
        user_id=f"user-{bot_id}",
        display_name=None,
        now=time.time(),
    )


async def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> float:
    """Poll until check() holds; returns the seconds it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def launcher_for(mode: str, leave_timeout: float = 5.0) -> LocalProcessLauncher:
    return LocalProcessLauncher(
        command=[sys.executable, FAKE_WORKER, mode], leave_timeout=leave_timeout
    )


@pytest.fixture
async def polite() -> AsyncIterator[LocalProcessLauncher]:
    launcher = launcher_for("polite")
    yield launcher
    await launcher.close()


async def test_a_polite_worker_reports_in_call_then_leaves_on_request(
    polite: LocalProcessLauncher,
) -> None:
    record = make_record()
    await polite.start(record)
    assert record.pid is not None

    await wait_until(lambda: record.status == "in_call" and bool(record.tracks))
    assert record.endpoint_id == "user-b-1_1"
    assert record.tracks[0].frames > 0

    await polite.leave(record)
    assert record.status == "leaving"
    await wait_until(lambda: record.exited)
    assert (record.status, record.reason, record.exit_code) == (
        "left",
        "left on request",
        0,
    )


async def test_sigkill_turns_into_failed_naming_the_signal_within_a_second(
    polite: LocalProcessLauncher,
) -> None:
    record = make_record()
    other = make_record("b-2")
    await polite.start(record)
    await polite.start(other)
    await wait_until(lambda: record.status == other.status == "in_call")

    assert record.pid is not None
    os.kill(record.pid, signal.SIGKILL)
    took = await wait_until(lambda: record.status == "failed")

    assert took < 1.0
    assert record.reason == "worker killed by SIGKILL (exit code -9)"
    assert other.status == "in_call"


async def test_a_crashing_worker_fails_with_its_exit_code() -> None:
    launcher = launcher_for("crash")
    record = make_record()
    await launcher.start(record)

    await wait_until(lambda: record.exited)
    assert (record.status, record.reason) == ("failed", "worker exited with code 3")
    await launcher.close()


async def test_a_worker_that_ignores_leave_is_killed_after_the_deadline() -> None:
    launcher = launcher_for("stubborn", leave_timeout=0.5)
    record = make_record()
    await launcher.start(record)
    await wait_until(lambda: record.status == "in_call")

    await launcher.leave(record)
    took = await wait_until(lambda: record.exited)

    assert 0.4 < took < 2.0
    assert record.status == "failed"
    assert record.reason == "the bot did not leave within 0.5 s of being asked; killed"
    assert record.exit_code == -signal.SIGKILL
    await launcher.close()


async def test_lines_that_are_not_reports_are_skipped() -> None:
    launcher = launcher_for("noisy")
    record = make_record()
    await launcher.start(record)
    await wait_until(lambda: record.status == "in_call")
    await launcher.leave(record)
    await wait_until(lambda: record.exited)

    assert record.bad_reports == 1
    assert record.status == "left"
    await launcher.close()


async def test_a_worker_that_dies_before_reading_its_config_fails() -> None:
    launcher = LocalProcessLauncher(
        command=[sys.executable, "-c", "raise SystemExit(2)"]
    )
    record = make_record()
    await launcher.start(record)

    await wait_until(lambda: record.exited)
    assert (record.status, record.reason) == ("failed", "worker exited with code 2")
    await launcher.close()


async def test_close_makes_every_bot_leave_and_refuses_new_ones() -> None:
    launcher = launcher_for("polite")
    records = [make_record("b-1"), make_record("b-2")]
    for record in records:
        await launcher.start(record)
    await wait_until(lambda: all(r.status == "in_call" for r in records))

    await launcher.close()

    assert [r.status for r in records] == ["left", "left"]
    assert not launcher.ready
    with pytest.raises(LaunchError):
        await launcher.start(make_record("b-3"))


async def test_a_missing_worker_program_is_a_launch_error() -> None:
    launcher = LocalProcessLauncher(command=["/nonexistent/callbot-worker"])

    with pytest.raises(LaunchError, match="cannot start the bot worker"):
        await launcher.start(make_record())


def gone(pid: int) -> bool:
    """True once the process has ended (a zombie counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def report_types(bot_dir: Path) -> list[str]:
    lines = (bot_dir / "reports.jsonl").read_text().splitlines()
    return [json.loads(line)["type"] for line in lines]


async def warm_dirs(
    launcher: LocalProcessLauncher, bots_dir: Path, count: int = 1
) -> list[Path]:
    """The directories of the pool's ``count`` warm workers, oldest first."""
    await wait_until(lambda: launcher.warm + launcher.warm_starting == count)
    return sorted(
        bots_dir.glob("warm-*"), key=lambda p: (p / "worker.pid").stat().st_mtime_ns
    )


def ready_launcher(bots_dir: Path, go: Path) -> LocalProcessLauncher:
    """A pool of one warm worker that gets ready once ``go`` exists."""
    return LocalProcessLauncher(
        command=[sys.executable, READY_WORKER, str(go), "polite"],
        bots_dir=bots_dir,
        warm_pool=1,
    )


async def test_a_warm_worker_counts_once_ready_takes_the_next_bot_and_refills(
    tmp_path: Path,
) -> None:
    go = tmp_path / "go"
    bots = tmp_path / "bots"
    launcher = ready_launcher(bots, go)
    await launcher.open()
    [warm] = await warm_dirs(launcher, bots)
    warm_pid = int((warm / "worker.pid").read_text())
    await asyncio.sleep(0.3)  # several of the pool's checks
    # Started, but it has not said ready: not counted.
    assert (launcher.warm, launcher.warm_starting) == (0, 1)
    assert launcher.warm_pool == (0, 1)
    assert not (warm / "ready").exists()

    go.touch()
    await wait_until(lambda: launcher.warm == 1)
    assert (warm / "ready").exists()
    assert launcher.warm_starting == 0
    assert launcher.warm_pool == (1, 0)

    record = make_record()
    await launcher.start(record)

    assert record.pid == warm_pid
    assert record.state_dir == str(bots / "b-1")
    assert (bots / "b-1" / "ready").exists()
    await wait_until(lambda: record.status == "in_call")
    await wait_until(lambda: launcher.warm == 1)
    [refill] = bots.glob("warm-*")
    refill_pid = int((refill / "worker.pid").read_text())
    assert (refill / "ready").exists()

    await launcher.leave(record)
    await wait_until(lambda: record.exited)
    assert (record.status, record.exit_code) == ("left", 0)
    # The ready report stays between worker and keeper.
    assert report_types(bots / "b-1")[:2] == ["status", "joined"]
    assert "ready" not in report_types(bots / "b-1")
    assert record.bad_reports == 0
    await launcher.close()
    assert list(bots.glob("warm-*")) == []
    await wait_until(lambda: gone(refill_pid))


async def test_a_ready_warm_worker_is_handed_out_before_an_older_starting_one(
    tmp_path: Path,
) -> None:
    bots = tmp_path / "bots"
    # "go" is relative: each worker waits for the file in its own directory.
    launcher = LocalProcessLauncher(
        command=[sys.executable, READY_WORKER, "go", "polite"],
        bots_dir=bots,
        warm_pool=2,
    )
    await launcher.open()
    older, newer = await warm_dirs(launcher, bots, 2)
    (newer / "go").touch()
    await wait_until(lambda: launcher.warm == 1)
    newer_pid = int((newer / "worker.pid").read_text())

    record = make_record()
    await launcher.start(record)

    assert record.pid == newer_pid
    assert older.exists() and not (older / "ready").exists()
    (bots / "b-1" / "go").touch()  # the bot's worker has already had it
    await wait_until(lambda: record.status == "in_call")
    await launcher.close()


async def test_a_bot_arriving_before_any_warm_worker_is_ready_takes_a_starting_one(
    tmp_path: Path,
) -> None:
    go = tmp_path / "go"
    bots = tmp_path / "bots"
    launcher = ready_launcher(bots, go)
    await launcher.open()
    [warm] = await warm_dirs(launcher, bots)
    warm_pid = int((warm / "worker.pid").read_text())
    assert launcher.warm == 0

    record = make_record()
    await launcher.start(record)

    # Its imports are under way: sooner than a cold start (see the launcher).
    assert record.pid == warm_pid
    assert not (bots / "b-1" / "ready").exists()
    go.touch()
    await wait_until(lambda: record.status == "in_call")
    assert (bots / "b-1" / "ready").exists()
    assert "ready" not in report_types(bots / "b-1")
    assert record.bad_reports == 0
    await launcher.close()


async def test_a_warm_worker_that_never_gets_ready_is_dropped_and_not_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bots = tmp_path / "bots"
    # The stand-in worker never says ready.
    launcher = LocalProcessLauncher(
        command=[sys.executable, FAKE_WORKER, "polite"],
        bots_dir=bots,
        warm_pool=1,
        warm_ready_timeout=0.5,
    )
    with caplog.at_level(logging.WARNING, logger="api.launcher"):
        await launcher.open()
        [warm] = await warm_dirs(launcher, bots)
        warm_pid = int((warm / "worker.pid").read_text())
        took = await wait_until(lambda: gone(warm_pid) and not warm.exists())
        await asyncio.sleep(0.5)  # several of the pool's checks

    assert took < 2.0
    assert list(bots.glob("warm-*")) == []
    assert (launcher.warm, launcher.warm_starting) == (0, 0)
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert dropped == [f"warm pool: worker in {warm} not ready in 0.5 s; dropped"]

    # The next bot starts cold, and the pool tries again.
    record = make_record()
    await launcher.start(record)
    assert record.pid != warm_pid
    await wait_until(lambda: record.status == "in_call")
    await wait_until(lambda: launcher.warm_starting == 1)
    await launcher.close()


async def test_a_warm_worker_that_ends_before_a_bot_is_dropped_and_not_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bots = tmp_path / "bots"
    launcher = LocalProcessLauncher(
        command=[sys.executable, "-c", "raise SystemExit(4)"],
        bots_dir=bots,
        warm_pool=1,
    )
    with caplog.at_level(logging.WARNING, logger="api.launcher"):
        await launcher.open()
        await wait_until(
            lambda: any("ended; dropped" in r.getMessage() for r in caplog.records)
        )
        await asyncio.sleep(0.5)  # several of the pool's checks

    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1
    assert list(bots.glob("warm-*")) == []
    assert (launcher.warm, launcher.warm_starting) == (0, 0)
    await launcher.close()


async def test_a_stale_keeper_pid_of_another_process_is_never_killed() -> None:
    # After a container restart the pid saved in a bot's directory may belong
    # to any process: only a keeper's session may be killed through it.
    from api.launcher import _is_keeper

    other = await asyncio.create_subprocess_exec("sleep", "30")
    try:
        assert _is_keeper(other.pid) is False
        assert _is_keeper(os.getpid()) is False
        assert other.returncode is None
    finally:
        other.kill()
        await other.wait()


async def test_a_bots_later_log_lines_name_it_but_not_the_request_that_started_it(
    polite: LocalProcessLauncher, caplog: pytest.LogCaptureFixture
) -> None:
    requestid.install_log_field()
    record = make_record()
    token = requestid.current.set("post-1")
    try:
        with caplog.at_level(logging.INFO, logger="api"):
            await polite.start(record)
            await wait_until(lambda: record.status == "in_call")
    finally:
        requestid.current.reset(token)

    lines = {r.getMessage(): r for r in caplog.records}
    started = next(r for m, r in lines.items() if "started worker pid" in m)
    in_call = lines["bot b-1 (user-b-1, room lobby): connecting -> in_call"]
    assert started.request_id == "post-1"  # type: ignore[attr-defined]
    assert in_call.request_id == "-"  # type: ignore[attr-defined]
    assert (in_call.bot_id, in_call.user_id, in_call.room_id) == (  # type: ignore[attr-defined]
        "b-1",
        "user-b-1",
        "lobby",
    )


def process_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


async def test_a_warm_worker_killed_just_before_a_bot_is_not_handed_out(
    tmp_path: Path,
) -> None:
    go = tmp_path / "go"
    go.touch()
    bots = tmp_path / "bots"
    launcher = ready_launcher(bots, go)
    await launcher.open()
    await wait_until(lambda: launcher.warm == 1)
    [warm] = bots.glob("warm-*")
    warm_pid = int((warm / "worker.pid").read_text())
    os.kill(warm_pid, signal.SIGKILL)
    # Dead (a zombie until its keeper's next look, every 0.5 s, reaps it), but
    # its directory still says ready.
    await wait_until(lambda: process_state(warm_pid) in ("Z", None))
    record = make_record()
    await launcher.start(record)
    assert record.pid != warm_pid
    await wait_until(lambda: record.status == "in_call")
    await launcher.close()
    assert record.status == "left"
