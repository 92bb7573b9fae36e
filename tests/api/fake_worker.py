"""A stand-in bot worker speaking the report protocol, for launcher tests.

Usage: python fake_worker.py MODE, where MODE is one of
  polite  — joins, reports stats, leaves on {"cmd": "leave"} and exits 0
  stubborn — joins, then ignores the leave command
  crash   — joins, then exits with code 3
  noisy   — writes a line that is not JSON, then behaves like polite
  hang    — joins, then goes silent without exiting
"""

from __future__ import annotations

import json
import sys
import threading
import time


def report(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def main() -> int:
    mode = sys.argv[1]
    config = json.loads(sys.stdin.readline())
    endpoint_id = f"{config['user_id']}_1"

    report(type="status", status="connecting", reason=None, ts=time.time())
    if mode == "noisy":
        sys.stdout.write("hello from a library that prints\n")
        sys.stdout.flush()
    report(type="joined", endpoint_id=endpoint_id)
    report(type="status", status="in_call", reason=None, ts=time.time())
    if mode == "crash":
        time.sleep(0.2)
        sys.stderr.write("fake worker: the media pipeline broke\n")
        sys.stderr.flush()
        return 3
    if mode == "hang":
        time.sleep(3600)

    leave = threading.Event()
    attention = {"level": config.get("attention", "medium")}

    def read_commands() -> None:
        for line in sys.stdin:
            command = json.loads(line)
            if command.get("cmd") == "leave" and mode != "stubborn":
                leave.set()
            elif command.get("cmd") == "attention":
                attention["level"] = command["level"]

    threading.Thread(target=read_commands, daemon=True).start()
    frames = 0
    while not leave.wait(0.1):
        frames += 3
        report(
            type="stats",
            ts=time.time(),
            endpoint_id=endpoint_id,
            participants=[],
            tier="viewer",
            speaking=False,
            attention=attention["level"],
            snapshots_sent=frames // 30,
            snapshots_received={"bot-2": frames // 60},
            tracks=[
                {
                    "direction": "outbound",
                    "kind": "video",
                    "track_id": "v",
                    "frames": frames,
                    "packets": frames,
                    "bytes": frames * 1000,
                }
            ],
        )
    report(type="status", status="leaving", reason=None, ts=time.time())
    report(type="status", status="left", reason=None, ts=time.time())
    return 0


if __name__ == "__main__":
    sys.exit(main())
