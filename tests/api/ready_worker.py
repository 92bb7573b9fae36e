"""A stand-in warm worker that says when it is ready, for keeper and launcher tests.

Usage: python ready_worker.py GO_FILE MODE: waits until GO_FILE exists (its
"imports"; a relative path is in the worker's own bot directory), writes the
ready report, then runs fake_worker.py MODE.
"""

from __future__ import annotations

import json
import runpy
import sys
import time
from pathlib import Path

FAKE_WORKER = str(Path(__file__).with_name("fake_worker.py"))


def main() -> None:
    go = Path(sys.argv[1])
    while not go.exists():
        time.sleep(0.02)
    sys.stdout.write(json.dumps({"type": "ready"}) + "\n")
    sys.stdout.flush()
    sys.argv = [FAKE_WORKER, sys.argv[2]]
    runpy.run_path(FAKE_WORKER, run_name="__main__")


if __name__ == "__main__":
    main()
