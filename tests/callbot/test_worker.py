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
