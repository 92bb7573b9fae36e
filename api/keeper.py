"""``python -m api.keeper DIR [--owner PID] -- COMMAND...``: keeps one bot worker alive.

The keeper is what lets a bot outlive the control plane. It runs in its own
session, owns the worker's stdin and stdout, and talks to the control plane
only through files in the bot's directory (see :mod:`api.botdir`):

- ``config.json`` is handed to the worker as its first stdin line; a warm
  keeper (started before there is a bot) starts its worker at once and waits
  for the file and a ``start`` command;
- the worker's first stdout line, ``{"type": "ready"}``, says its imports are
  done and it waits for its configuration: the keeper consumes it and writes
  ``ready`` (the launcher hands out only warm workers with that file); a warm
  worker that ends before it gets a bot leaves ``exit.json`` and ends its
  keeper;
- every other stdout line of the worker is appended to ``reports.jsonl``;
- the worker's stderr goes to ``worker.log``;
- commands arrive as JSON lines on the FIFO ``commands`` (``leave``,
  ``attention``, ``kill``); ``leave`` and ``attention`` go on to the worker;
- ``worker.pid`` names the worker, ``exit.json`` says how it ended.

Nothing is left behind for ever. A warm keeper nobody claims ends (with its
worker) when its directory is removed, or once the control plane that started
it (``--owner``) has been gone for ``--orphan-grace`` seconds; a restarted
control plane drops and refills its pool anyway. A bot's keeper whose
directory is removed can no longer be reached or stopped by anyone, so its
worker is asked to leave and killed if it does not.

A control plane that dies loses nothing: the worker keeps its stdin, the files
keep the reports, and a new control plane reads on from its saved offset.
"""

from __future__ import annotations

import itertools
import json
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from api.botdir import BotDir

# How often a waiting keeper looks at its directory and its owner.
CHECK_INTERVAL = 0.5
# Seconds a warm keeper outlives the control plane that started it.
ORPHAN_GRACE = 30.0
# Seconds a worker gets to leave once its directory is gone.
LEAVE_TIMEOUT = 10.0
# The commands a keeper hands on to its worker's stdin.
_FORWARDED = frozenset({"leave", "attention"})
# The type of the worker's first report once its imports are done.
READY_TYPE = "ready"


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _command(line: bytes) -> dict[str, object] | None:
    try:
        command = json.loads(line)
    except ValueError:
        return None
    if not isinstance(command, dict) or not isinstance(command.get("cmd"), str):
        return None
    return command


def _directory_gone() -> bool:
    """True once the keeper's working directory was removed (not renamed)."""
    try:
        return os.stat(".").st_nlink == 0
    except OSError:
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has ended; only its parent has not noticed yet.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _readable(fifo: IO[bytes], timeout: float) -> bool:
    ready, _, _ = select.select([fifo], [], [], timeout)
    return bool(ready)


def _to_worker(worker: subprocess.Popen[bytes], command: dict[str, object]) -> None:
    if worker.stdin is None:
        return
    try:
        worker.stdin.write(json.dumps(command).encode() + b"\n")
        worker.stdin.flush()
    except (BrokenPipeError, ValueError):
        pass


def _relay_commands(fifo: IO[bytes], worker: subprocess.Popen[bytes]) -> None:
    leave_deadline: float | None = None
    while worker.poll() is None:
        if _readable(fifo, CHECK_INTERVAL):
            command = _command(fifo.readline())
            if command is None:
                continue
            if command["cmd"] == "kill":
                worker.kill()
            elif command["cmd"] in _FORWARDED:
                _to_worker(worker, command)
        elif leave_deadline is None and _directory_gone():
            leave_deadline = time.monotonic() + LEAVE_TIMEOUT
            _to_worker(worker, {"cmd": "leave"})
        if leave_deadline is not None and time.monotonic() > leave_deadline:
            worker.kill()


class _FirstLine:
    """The worker's first stdout line: the ready report, or a report to keep."""

    def __init__(self, bot_dir: BotDir) -> None:
        self._dir = bot_dir
        self.taken = False
        self.kept = b""

    def take(self, stdout: IO[bytes]) -> None:
        """Read it (blocks for a whole line); the ready report becomes ``ready``."""
        # Known limit: a worker that writes half a line and then waits for its
        # config holds a warm keeper here (the protocol is whole lines).
        line = stdout.readline()
        self.taken = True
        if _is_ready(line):
            _write_atomically(self._dir.ready, json.dumps({"ts": time.time()}))
        else:
            self.kept = line


def _is_ready(line: bytes) -> bool:
    try:
        report = json.loads(line)
    except ValueError:
        return False
    return isinstance(report, dict) and report.get("type") == READY_TYPE


def _wait_for_config(
    fifo: IO[bytes],
    worker: subprocess.Popen[bytes],
    bot_dir: BotDir,
    first: _FirstLine,
    owner: int | None,
    orphan_grace: float,
) -> str:
    """Wait warm for a bot, taking the worker's ready line as it comes.

    Returns ``"config"`` once the config is there, ``"ended"`` when the worker
    ended first and ``"stop"`` when the keeper should end instead.
    """
    assert worker.stdout is not None
    orphaned_at: float | None = None
    while not bot_dir.config.exists():
        if worker.poll() is not None:
            return "ended"
        watched: list[IO[bytes]] = [fifo] if first.taken else [fifo, worker.stdout]
        readable, _, _ = select.select(watched, [], [], CHECK_INTERVAL)
        if worker.stdout in readable:
            first.take(worker.stdout)
        if fifo in readable:
            command = _command(fifo.readline())
            if command is not None and command["cmd"] == "kill":
                return "stop"
        if readable:
            continue
        if _directory_gone():
            return "stop"
        if owner is not None and not _alive(owner):
            now = time.monotonic()
            orphaned_at = orphaned_at if orphaned_at is not None else now
            # Known limit: a reused pid counts as the owner still being there.
            if now - orphaned_at >= orphan_grace:
                shutil.rmtree(os.getcwd(), ignore_errors=True)
                return "stop"
    return "config"


def _copy_reports(stdout: IO[bytes], reports: IO[bytes], first: _FirstLine) -> None:
    if not first.taken:
        first.take(stdout)
    kept = [first.kept] if first.kept else []
    for line in itertools.chain(kept, iter(stdout.readline, b"")):
        if not line.endswith(b"\n"):
            line += b"\n"
        reports.write(line)
        reports.flush()


def _write_exit(bot_dir: BotDir, returncode: int) -> None:
    _write_atomically(
        bot_dir.exit, json.dumps({"returncode": returncode, "ts": time.time()})
    )


def run(
    directory: str,
    command: list[str],
    *,
    owner: int | None = None,
    orphan_grace: float = ORPHAN_GRACE,
) -> int:
    # Relative paths from here on: a warm keeper's directory is renamed to
    # the bot's when the launcher hands it a bot.
    os.chdir(directory)
    bot_dir = BotDir(Path("."))
    # O_RDWR keeps a writer open, so the FIFO never reads end-of-file when a
    # control plane closes its end or dies. Opened first: once ``worker.pid``
    # is there, the keeper is seen listening.
    fifo = os.fdopen(os.open(bot_dir.commands, os.O_RDWR), "rb", buffering=0)
    with open(bot_dir.worker_log, "ab") as log:
        try:
            worker = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        except OSError as exc:
            _write_atomically(
                bot_dir.exit,
                json.dumps({"spawn_error": str(exc), "ts": time.time()}),
            )
            return 1
    first = _FirstLine(bot_dir)
    try:
        _write_atomically(bot_dir.worker_pid, str(worker.pid))
        # A warm keeper's worker does its imports while it waits for a bot.
        waited = _wait_for_config(fifo, worker, bot_dir, first, owner, orphan_grace)
    except BaseException:
        # Its directory went while the keeper started (a control plane that
        # dropped its warm pool): nobody could reach the worker any more.
        worker.kill()
        worker.wait()
        raise
    if waited == "stop":
        worker.kill()
        worker.wait()
        return 0
    if waited == "ended":
        _write_exit(bot_dir, worker.wait())
        return 0

    assert worker.stdin is not None and worker.stdout is not None
    try:
        worker.stdin.write(bot_dir.config.read_bytes().strip() + b"\n")
        worker.stdin.flush()
    except BrokenPipeError:
        pass
    threading.Thread(target=_relay_commands, args=(fifo, worker), daemon=True).start()
    with open(bot_dir.reports, "ab") as reports:
        _copy_reports(worker.stdout, reports, first)
    _write_exit(bot_dir, worker.wait())
    return 0


def _daemonize(bot_dir: BotDir) -> None:
    """Leave the launcher behind: a child in a session of its own carries on.

    The launcher's process only waits for the short-lived parent, so no
    control-plane process is ever the keeper's parent, before or after a
    restart.
    """
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    log = os.open(bot_dir.path / "keeper.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    _write_atomically(bot_dir.keeper_pid, str(os.getpid()))


def main() -> None:
    args = sys.argv[1:]
    try:
        split = args.index("--")
    except ValueError:
        split = -1
    options = args[1:split]
    owner: int | None = None
    orphan_grace = ORPHAN_GRACE
    try:
        while options:
            name, value, *options = options
            if name == "--owner":
                owner = int(value)
            elif name == "--orphan-grace":
                orphan_grace = float(value)
            else:
                raise ValueError(name)
    except ValueError:
        split = -1
    if split < 1 or split == len(args) - 1:
        sys.stderr.write(
            "usage: python -m api.keeper DIR [--owner PID] [--orphan-grace S]"
            " -- COMMAND...\n"
        )
        sys.exit(2)
    _daemonize(BotDir(Path(args[0])))
    sys.exit(run(args[0], args[split + 1 :], owner=owner, orphan_grace=orphan_grace))


if __name__ == "__main__":
    main()
