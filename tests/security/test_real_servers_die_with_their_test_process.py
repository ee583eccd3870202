"""A real server started for tests never outlives the process that started it, nor do its files.

`LlamaServer`, `VLLMServer` and the Infinity fixture are `ServerProcess`es. Here one serves
with Python's own ``http.server`` from a child process, which is then killed with SIGKILL (as a
test worker killed for memory would be): its watchdog must take the server down with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import httpx
import pytest

from qwen_rerank.exceptions import QwenRerankError
from qwen_rerank.testing.server_process import ServerProcess

pytestmark = pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")


class HttpServer(ServerProcess):
    name = "http-server"
    health_path = "/"

    def __init__(self, directory: str) -> None:
        self.directory = directory
        super().__init__(startup_timeout=30)

    def command(self, port: int) -> list[str]:
        return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", self.directory]


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1.0)
    except httpx.HTTPError:
        return False
    return True


def test_stop_ends_the_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with HttpServer(str(tmp_path)) as server:
        assert httpx.get(server.url + "/", timeout=5).status_code == 200
    assert not answers(server.url)
    assert server.process is not None and server.process.poll() is not None


def test_a_server_that_exits_at_start_up_is_our_error_with_its_log(tmp_path) -> None:  # type: ignore[no-untyped-def]
    class Broken(HttpServer):
        def command(self, port: int) -> list[str]:
            return [sys.executable, "-c", "import sys; print('cannot bind: for a reason'); sys.exit(3)"]

    with pytest.raises(QwenRerankError, match=r"exited with code 3 at start-up(.|\n)*cannot bind"):
        Broken(str(tmp_path)).start()


def test_the_server_dies_with_the_process_that_started_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    starter = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from {__name__.rsplit(".", 1)[-1]} import HttpServer
        server = HttpServer({str(tmp_path)!r}).start()
        print(server.url, flush=True)
        time.sleep(600)
        """
    )
    # The starter keeps its temporary files in a folder of the test's, to see what is left there.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    parent = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout is not None
        url = parent.stdout.readline().strip()
        assert answers(url)
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 15
    while (answers(url) or any(scratch.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not answers(url)
    assert not list(scratch.iterdir())  # its log and folder went with it
