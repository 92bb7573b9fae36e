"""``callbot serve`` as a real process for restart tests, on a loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

FAKE_WORKER = str(Path(__file__).with_name("fake_worker.py"))
CALLBOT = str(Path(sys.executable).with_name("callbot"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """One ``callbot serve`` process over a data directory."""

    def __init__(
        self, data_dir: Path, *, mode: str | None = "polite", **env: str
    ) -> None:
        """``mode``: the stand-in worker's mode; None runs the real bot worker."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        variables = {
            "CALLBOT_PORT": str(self.port),
            "CALLBOT_DATA_DIR": str(data_dir),
            **env,
        }
        if mode is not None:
            variables["CALLBOT_WORKER_COMMAND"] = json.dumps(
                [sys.executable, FAKE_WORKER, mode]
            )
        self.env = dict(os.environ, **variables)
        self.log = open(data_dir.parent / f"serve-{self.port}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [CALLBOT, "serve"],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.headers: dict[str, str] = {}

    def create_key(self) -> str:
        """``callbot keys create`` on this data directory; uses the key from now on."""
        out = subprocess.run(
            [CALLBOT, "keys", "create", "--name", "tests"],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        key = out.stdout.strip().splitlines()[-1]
        self.headers["Authorization"] = f"Bearer {key}"
        return key

    def wait_live(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + "/health/live", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError("serve did not come up")

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.request(
            method, self.url + path, headers=headers, timeout=10.0, **kwargs
        )

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.log.close()

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.log.close()
        return code
