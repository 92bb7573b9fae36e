import io
import json

from callbot.bot.worker import run_worker


async def test_unknown_plugin_fails_the_worker_before_it_connects() -> None:
    config = {
        "bot_id": "b-1",
        "server_url": "ws://127.0.0.1:9/socket",
        "room_id": "lobby",
        "plugins": [{"name": "nope"}],
    }
    stdout = io.StringIO()
    code = await run_worker(io.StringIO(json.dumps(config) + "\n"), stdout)
    report = json.loads(stdout.getvalue().splitlines()[-1])
    assert code == 2
    assert report["status"] == "failed"
    assert "unknown plugin 'nope'" in report["reason"]


class _ConfigAfterReady(io.StringIO):
    """stdin that notes what stdout held when the worker asked for its config."""

    def __init__(self, text: str, stdout: io.StringIO) -> None:
        super().__init__(text)
        self._stdout = stdout
        self.stdout_when_read: str | None = None

    def readline(self, size: int | None = -1, /) -> str:
        if self.stdout_when_read is None:
            self.stdout_when_read = self._stdout.getvalue()
        return super().readline(size)


async def test_the_first_report_says_ready_before_the_config_is_read() -> None:
    stdout = io.StringIO()
    stdin = _ConfigAfterReady('{"room_id": 7}\n', stdout)

    code = await run_worker(stdin, stdout)

    assert stdin.stdout_when_read == '{"type":"ready"}\n'
    lines = [json.loads(line) for line in stdout.getvalue().splitlines()]
    assert lines[0] == {"type": "ready"}
    assert [r["type"] for r in lines] == ["ready", "status"]
    assert code == 2
