"""A real server started for tests: its own process group, a watchdog, a log, a health check.

`ServerProcess` is what `LlamaServer`, `VLLMServer` and the Infinity fixture share. The
command runs in a session of its own, led by a small watchdog process: stopping the server
signals the whole group (a server's engine and worker processes go with it), and if the
process that started it dies first (a test worker killed for memory, say), the watchdog
kills the group, so no server outlives its test run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import httpx

from qwen_rerank.exceptions import QwenRerankError

__all__ = ["ServerProcess", "free_port"]

_S = TypeVar("_S", bound="ServerProcess")

# Runs the command as its child and waits for it; if the process that started the watchdog dies
# first, it removes the server's folder and log (which that process would have removed on stop)
# and kills its whole process group. SIGTERM reaches the group: the watchdog outlives it and
# exits with the server's code.
_WATCHDOG = """
import os, shutil, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, lambda *_: None)
parent, folder, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
child = subprocess.Popen(sys.argv[4:])
while child.poll() is None:
    if os.getppid() != parent:
        shutil.rmtree(folder, ignore_errors=True)
        try:
            os.unlink(log)
        except OSError:
            pass
        os.killpg(0, signal.SIGKILL)
    time.sleep(1)
sys.exit(child.returncode)
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """A server on 127.0.0.1 and a free port, started by `start()` and stopped by `stop()` (or `with`).

    Subclasses give `name`, `command(port)` and, where they differ, `health_path`,
    `stop_grace` and `environment()`.
    """

    name = "server"
    health_path = "/health"
    stop_grace = 10.0  # seconds between SIGTERM and SIGKILL
    poll_interval = 0.2

    def __init__(self, *, startup_timeout: float) -> None:
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None
        self._tmp: str | None = None

    def command(self, port: int) -> Sequence[str]:
        """The command line that serves on ``port``."""
        raise NotImplementedError

    def environment(self, tmp: str) -> Mapping[str, str]:
        """The server's environment; ``tmp`` is a folder of its own, removed on stop."""
        return {**os.environ, "TMPDIR": tmp}

    @property
    def url(self) -> str:
        """The server's root URL, `http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self.port}"

    def start(self: _S) -> _S:
        """Start the server and wait until its health check answers 200.

        Raises:
            QwenRerankError: it exited or did not become healthy in time; the message ends with its log.
        """
        self.port = free_port()
        self._log = tempfile.NamedTemporaryFile(prefix=f"{self.name}-", suffix=".log")  # noqa: SIM115
        self._tmp = tempfile.mkdtemp(prefix=f"{self.name}-")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WATCHDOG,
                str(os.getpid()),
                self._tmp,
                self._log.name,
                *self.command(self.port),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(self.environment(self._tmp)),
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._fail(f"{self.name} exited with code {self.process.returncode} at start-up")
            if self._healthy():
                return self
            time.sleep(self.poll_interval)
        self._fail(f"{self.name} was not healthy after {self.startup_timeout:.0f} s")
        raise AssertionError("unreachable")

    def _healthy(self) -> bool:
        try:
            return httpx.get(self.url + self.health_path, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        """Everything the server printed so far."""
        if self._log is None:
            return ""
        return Path(self._log.name).read_text(encoding="utf-8", errors="replace")

    def _fail(self, what: str) -> None:
        tail = self.log()[-4000:]
        self.stop()
        raise QwenRerankError(f"{what}:\n{tail}")

    def kill(self) -> None:
        """Kill the server and every process of its group at once (SIGKILL), as a crash would."""
        self._signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `stop_grace` seconds); remove its log and folder."""
        if self.process is not None and self.process.poll() is None:
            self._signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=self.stop_grace)
        self._signal(signal.SIGKILL)  # whatever of its process group is left
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the server's process group."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
