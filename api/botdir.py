"""The directory of one bot: the files its keeper and the control plane share.

Files, written by the keeper (:mod:`api.keeper`) unless noted:
``config.json`` (by the launcher), ``keeper.pid`` (by the launcher),
``worker.pid``, ``ready`` (once the worker has said its imports are done and it
waits for its configuration), ``reports.jsonl`` (append-only), ``worker.log``
(the worker's stderr), ``exit.json`` and the FIFO ``commands`` (made by the
launcher).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from pathlib import Path
from typing import Any

# One read never takes more than this; the rest comes on the next poll.
_READ_LIMIT = 1 << 20


class BotDir:
    """Paths and plain-file operations on one bot's directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config = path / "config.json"
        self.keeper_pid = path / "keeper.pid"
        self.worker_pid = path / "worker.pid"
        self.ready = path / "ready"
        self.reports = path / "reports.jsonl"
        self.worker_log = path / "worker.log"
        self.exit = path / "exit.json"
        self.commands = path / "commands"

    def create(self, config: dict[str, Any] | None) -> None:
        """Make the directory, the command FIFO and (unless warm) the config."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(FileExistsError):
            os.mkfifo(self.commands, 0o600)
        if config is not None:
            self.write_config(config)

    def write_config(self, config: dict[str, Any]) -> None:
        """Write config.json whole: a waiting keeper never sees half of it."""
        tmp = self.path / "config.tmp"
        tmp.write_text(json.dumps(config))
        os.replace(tmp, self.config)

    def read_reports(self, offset: int) -> tuple[list[bytes], int]:
        """Complete report lines after ``offset`` and the offset after them."""
        try:
            with open(self.reports, "rb") as f:
                f.seek(offset)
                chunk = f.read(_READ_LIMIT)
        except FileNotFoundError:
            return [], offset
        end = chunk.rfind(b"\n")
        if end < 0:
            if len(chunk) >= _READ_LIMIT:
                # One line longer than a read: skip it whole.
                return [b"<line too long>"], offset + len(chunk)
            return [], offset
        lines = chunk[: end + 1].splitlines()
        return lines, offset + end + 1

    def send(self, command: dict[str, Any]) -> bool:
        """Write one command line to the keeper; False if no keeper listens."""
        try:
            fd = os.open(self.commands, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.ENOENT):
                return False
            raise
        try:
            os.write(fd, json.dumps(command).encode() + b"\n")
        except OSError:
            return False
        finally:
            os.close(fd)
        return True

    def keeper_alive(self) -> bool:
        """True while a keeper holds the command FIFO open for reading."""
        try:
            fd = os.open(self.commands, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            return False
        os.close(fd)
        return True

    def is_ready(self) -> bool:
        """True once the worker has done its imports and waits for a config."""
        return self.ready.exists()

    def read_exit(self) -> dict[str, Any] | None:
        """How the worker ended, once the keeper has written it."""
        try:
            data = json.loads(self.exit.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def read_pid(self, path: Path) -> int | None:
        try:
            return int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def log_tail(self, lines: int = 50) -> list[str]:
        """The last lines the worker logged."""
        try:
            with open(self.worker_log, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return []
        return text.splitlines()[-lines:]
