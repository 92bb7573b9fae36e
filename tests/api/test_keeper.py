"""The keeper: warm keepers nobody claims end, and commands reach the worker."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from api.botdir import BotDir

FAKE_WORKER = str(Path(__file__).with_name("fake_worker.py"))
READY_WORKER = str(Path(__file__).with_name("ready_worker.py"))

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - start


def start_keeper(
    bot_dir: BotDir, *options: str, worker: list[str] | None = None
) -> tuple[int, int]:
    """Start a keeper on the directory; its pid and its worker's pid."""
    command = worker if worker is not None else [sys.executable, FAKE_WORKER, "polite"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "api.keeper",
            str(bot_dir.path),
            *options,
            "--",
            *command,
        ],
        check=True,
    )
    wait_until(lambda: bot_dir.read_pid(bot_dir.worker_pid) is not None)
    keeper = bot_dir.read_pid(bot_dir.keeper_pid)
    worker = bot_dir.read_pid(bot_dir.worker_pid)
    assert keeper is not None and worker is not None
    return keeper, worker


def test_a_warm_keeper_ends_with_its_worker_when_its_directory_is_removed(
    tmp_path: Path,
) -> None:
    warm = BotDir(tmp_path / "warm-1")
    warm.create(None)
    keeper, worker = start_keeper(warm)
    assert alive(keeper) and alive(worker)

    shutil.rmtree(warm.path)

    took = wait_until(lambda: not alive(keeper) and not alive(worker))
    assert took < 2.0


def test_a_warm_keeper_ends_once_its_control_plane_is_gone_for_the_grace(
    tmp_path: Path,
) -> None:
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    warm = BotDir(tmp_path / "warm-1")
    warm.create(None)
    keeper, worker = start_keeper(
        warm, "--owner", str(owner.pid), "--orphan-grace", "1"
    )

    time.sleep(1.5)
    assert alive(keeper), "the owner still runs: the keeper waits"
    owner.kill()
    owner.wait()
    took = wait_until(lambda: not alive(keeper) and not alive(worker))

    assert 0.9 < took < 3.0
    assert not warm.path.exists()


def reports(bot: BotDir) -> list[dict[str, object]]:
    lines = bot.reports.read_text().splitlines() if bot.reports.exists() else []
    return [json.loads(line) for line in lines]


def test_a_warm_keeper_writes_ready_only_after_its_worker_says_so(
    tmp_path: Path,
) -> None:
    go = tmp_path / "go"
    warm = BotDir(tmp_path / "warm-1")
    warm.create(None)
    start_keeper(
        warm, "--owner", "1", worker=[sys.executable, READY_WORKER, str(go), "polite"]
    )
    time.sleep(0.3)  # a few of the keeper's checks without a ready report
    assert not warm.ready.exists() and not warm.is_ready()

    go.touch()
    wait_until(warm.is_ready)
    assert json.loads(warm.ready.read_text())["ts"] > 0

    warm.write_config({"user_id": "bot-1", "room_id": "lobby"})
    assert warm.send({"cmd": "start"})
    wait_until(lambda: any(r.get("status") == "in_call" for r in reports(warm)))
    # The ready report is the keeper's: the bot's reports start with its status.
    assert reports(warm)[0]["type"] == "status"
    assert all(r["type"] != "ready" for r in reports(warm))
    shutil.rmtree(warm.path)


def test_the_real_worker_says_ready_once_imported_and_its_keeper_keeps_it(
    tmp_path: Path,
) -> None:
    warm = BotDir(tmp_path / "warm-1")
    warm.create(None)
    keeper, worker = start_keeper(
        warm, "--owner", "1", worker=[sys.executable, "-m", "callbot.bot.worker"]
    )
    wait_until(warm.is_ready, timeout=30.0)
    assert warm.read_exit() is None and alive(worker)

    warm.write_config({"server_url": "ws://127.0.0.1:9/socket", "plugins": [1]})
    assert warm.send({"cmd": "start"})
    wait_until(lambda: warm.read_exit() is not None, timeout=30.0)

    assert warm.read_exit() == {"returncode": 2, "ts": pytest.approx(time.time(), 30)}
    [failed] = reports(warm)
    assert (failed["type"], failed["status"]) == ("status", "failed")
    wait_until(lambda: not alive(keeper))


def test_a_warm_worker_that_ends_before_its_bot_leaves_exit_json_and_no_ready(
    tmp_path: Path,
) -> None:
    warm = BotDir(tmp_path / "warm-1")
    warm.create(None)
    keeper, _ = start_keeper(
        warm, "--owner", "1", worker=[sys.executable, "-c", "raise SystemExit(4)"]
    )

    took = wait_until(lambda: not alive(keeper))

    assert took < 2.0
    assert warm.read_exit() == {"returncode": 4, "ts": pytest.approx(time.time(), 30)}
    assert not warm.is_ready() and not warm.keeper_alive()
    assert not warm.reports.exists()


def test_commands_reach_the_worker_and_a_removed_directory_makes_it_leave(
    tmp_path: Path,
) -> None:
    bot = BotDir(tmp_path / "b-1")
    bot.create({"user_id": "bot-1", "room_id": "lobby"})
    keeper, worker = start_keeper(bot, "--owner", "1")

    wait_until(lambda: any(r.get("status") == "in_call" for r in reports(bot)))
    # A worker that does not say ready: its first line is a report, kept.
    assert reports(bot)[0]["status"] == "connecting"
    assert not bot.is_ready()
    assert bot.send({"cmd": "attention", "level": "low"})
    wait_until(lambda: any(r.get("attention") == "low" for r in reports(bot)))

    shutil.rmtree(bot.path)
    wait_until(lambda: not alive(keeper) and not alive(worker))
