"""``python -m api.keeper DIR -- COMMAND...``: keeps one bot worker alive on its own.

The keeper is what lets a bot outlive the control plane. It runs in its own
session, owns the worker's stdin and stdout, and talks to the control plane
only through files in the bot's directory (see :mod:`api.botdir`):

- ``config.json`` is handed to the worker as its first stdin line; a warm
  keeper (started before there is a bot) starts its worker at once and waits
  for the file and a ``start`` command;
- every stdout line of the worker is appended to ``reports.jsonl``;
- the worker's stderr goes to ``worker.log``;
- commands arrive as JSON lines on the FIFO ``commands`` (``leave``, ``kill``);
- ``worker.pid`` names the worker, ``exit.json`` says how it ended.

A control plane that dies loses nothing: the worker keeps its stdin, the files
keep the reports, and a new control plane reads on from its saved offset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from api.botdir import BotDir


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _command(line: bytes) -> str | None:
    try:
        command = json.loads(line)
    except ValueError:
        return None
    cmd = command.get("cmd") if isinstance(command, dict) else None
    return cmd if isinstance(cmd, str) else None


def _relay_commands(fifo: IO[bytes], worker: subprocess.Popen[bytes]) -> None:
    for line in iter(fifo.readline, b""):
        cmd = _command(line)
        if cmd == "kill":
            worker.kill()
        elif cmd == "leave" and worker.stdin is not None:
            try:
                worker.stdin.write(b'{"cmd": "leave"}\n')
                worker.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass


def _copy_reports(stdout: IO[bytes], reports: IO[bytes]) -> None:
    for line in iter(stdout.readline, b""):
        if not line.endswith(b"\n"):
            line += b"\n"
        reports.write(line)
        reports.flush()


def run(directory: str, command: list[str]) -> int:
    # Relative paths from here on: a warm keeper's directory is renamed to
    # the bot's when the launcher hands it a bot.
    os.chdir(directory)
    bot_dir = BotDir(Path("."))
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
    _write_atomically(bot_dir.worker_pid, str(worker.pid))

    # O_RDWR keeps a writer open, so the FIFO never reads end-of-file when a
    # control plane closes its end or dies.
    fifo = os.fdopen(os.open(bot_dir.commands, os.O_RDWR), "rb", buffering=0)
    # A warm keeper's worker does its imports while it waits for a bot.
    while not bot_dir.config.exists():
        cmd = _command(fifo.readline())
        if cmd == "kill":
            worker.kill()
            worker.wait()
            return 0

    assert worker.stdin is not None and worker.stdout is not None
    try:
        worker.stdin.write(bot_dir.config.read_bytes().strip() + b"\n")
        worker.stdin.flush()
    except BrokenPipeError:
        pass
    threading.Thread(target=_relay_commands, args=(fifo, worker), daemon=True).start()
    with open(bot_dir.reports, "ab") as reports:
        _copy_reports(worker.stdout, reports)
    returncode = worker.wait()
    _write_atomically(
        bot_dir.exit, json.dumps({"returncode": returncode, "ts": time.time()})
    )
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
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: python -m api.keeper DIR -- COMMAND...\n")
        sys.exit(2)
    _daemonize(BotDir(Path(args[0])))
    sys.exit(run(args[0], args[2:]))


if __name__ == "__main__":
    main()
