"""What a server says cannot forge, flood or crash the command line's output: `check` and `rank`."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from qwen_rerank.cli import main

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

QUERY = "What is the capital of China?"
# ESC sequences (clear the line, move up), a bare CR, newlines, an 8-bit CSI and a right-to-left override.
FORGERY = (
    "bad input\x1b[2K\r\nok    reachable        forged one\n\x1b[1A"
    "ok    template         forged two\x9b2K\u202eevil\u2028ok    context length   forged three"
)
RAW_CONTROLS = ("\x1b", "\r", "\x9b", "\u202e", "\u2028")
STATUSES = ("ok ", "warn ", "FAIL ", "      fix: ")


class _PageServer(BaseHTTPRequestHandler):
    """Answers every request with `status`, `content_type` and `body`: a proxy's error page, say."""

    status: ClassVar[int] = 502
    content_type: ClassVar[str] = "text/html; charset=utf-8"
    body: ClassVar[bytes] = b""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(self.status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


HTML_PAGE = b"""<!DOCTYPE html>
<html>
<head><title>502 Bad Gateway</title></head>
<body>
<center><h1>502 Bad Gateway</h1></center>
<hr><center>nginx/1.25.3</center>
<p>The upstream server did not answer.</p>
<p>Please try again later.</p>
<p>If the problem persists, contact the administrator.</p>
<p>Request id: 1234</p>
<p>Time: now</p>
<p>Node: edge-7</p>
</body>
</html>
"""


@pytest.fixture
def html_server() -> Iterator[str]:
    handler = type("Html", (_PageServer,), {"body": HTML_PAGE})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def assert_printable(text: str) -> None:
    for control in RAW_CONTROLS:
        assert control not in text, f"raw {control!r} reached the terminal: {text!r}"


def test_check_output_escapes_what_the_server_said_and_cannot_be_forged(fake_vllm, capsys) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("status", status=400, message=FORGERY, times=10)
    assert main(["check", "--base-url", fake_vllm.url]) == 1
    out = capsys.readouterr().out
    assert_printable(out)
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("FAIL  reachable ") and lines[1].startswith("      fix: ")
    assert "forged one" in lines[0] and "\\u001b[2K" in lines[0]  # shown, escaped, on the finding's line


def test_check_json_escapes_controls_and_keeps_the_message(fake_vllm, capsys) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("status", status=400, message=FORGERY, times=10)
    assert main(["check", "--base-url", fake_vllm.url, "--json"]) == 1
    out = capsys.readouterr().out
    assert_printable(out)
    assert out.count("\n") == 1
    (finding,) = json.loads(out)["checks"]
    assert "ok    template         forged two\x9b2K\u202eevil" in finding["message"]  # the value is intact


def test_rank_error_from_the_server_is_one_escaped_line(fake_vllm, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("status", status=400, message=FORGERY, times=10)
    docs = tmp_path / "docs.txt"
    docs.write_text("Beijing is the capital.\nParis is in France.\n", encoding="utf-8")
    assert main(["rank", "--base-url", fake_vllm.url, "--query", QUERY, str(docs)]) == 1
    err = capsys.readouterr().err
    assert_printable(err)
    assert len(err.splitlines()) == 1 and err.startswith("qwen-rerank: error: ")


def test_an_html_page_is_one_finding_line(html_server: str, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["check", "--base-url", html_server]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("FAIL  reachable ") and "502" in lines[0]
    assert len(lines[0]) <= len("FAIL  reachable        ") + 400  # cut to 400 characters
    assert lines[1].startswith("      fix: ")


LOGIN_PAGE = b"""<!DOCTYPE html>
<html><head><title>Sign in</title></head>
<body><form method="post" action="/login"><input name="user"><input name="password" type="password">
<button>Sign in</button></form></body></html>
"""


@pytest.fixture
def login_server() -> Iterator[str]:
    """A single sign-on proxy in front of the server: every request gets its login page, HTTP 200."""
    handler = type("Login", (_PageServer,), {"status": 200, "body": LOGIN_PAGE})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def reachable_fix(argv: list[str], capsys) -> str:  # type: ignore[no-untyped-def]
    assert main(["check", *argv, "--json"]) == 1
    (finding,) = json.loads(capsys.readouterr().out)["checks"]
    assert finding["name"] == "reachable" and finding["status"] == "FAIL"
    fix: str = finding["fix"]
    return fix


def test_a_login_page_gets_the_generic_fix_as_an_error_page_does(
    login_server: str, html_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    generic = "Check --base-url, --api, --model and the API key."
    for server in (login_server, html_server):  # a 200 login page, a 502 error page
        fix = reachable_fix(["--base-url", server], capsys)
        assert generic in fix and "GGUF" not in fix and "convert" not in fix


def test_scores_that_are_not_probabilities_point_at_the_served_model(fake_vllm, capsys) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.add_fault("nan_score", times=10)
    fix = reachable_fix(["--base-url", fake_vllm.url], capsys)
    assert "not with probabilities" in fix and "--hf_overrides" in fix and "gguf" not in fix.lower()


def test_a_reply_of_another_dialect_points_at_api(capsys) -> None:  # type: ignore[no-untyped-def]
    from qwen_rerank.testing import FakeVLLMServer

    with FakeVLLMServer(None, api="sglang") as sglang:  # a bare list of results, not vLLM's object
        fix = reachable_fix(["--base-url", sglang.url], capsys)
    assert "--api" in fix and "sglang" in fix and "gguf" not in fix.lower()


def _answer(scores: list[float], tokens: int) -> dict[str, Any]:
    results = [{"index": i, "relevance_score": s} for i, s in enumerate(scores)]
    return {"results": results, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def test_an_absurd_token_count_is_reported_not_a_crash(fake_vllm, capsys) -> None:  # type: ignore[no-untyped-def]
    absurd = 10**400
    fake_vllm.add_fault("delay", seconds=0)  # the 1-document call is answered normally
    fake_vllm.add_fault("json", body=_answer([i / 40 for i in range(20)], absurd))
    fake_vllm.add_fault("json", body=_answer([0.9, 0.1], absurd), times=2)  # the template probes
    status = main(["check", "--base-url", fake_vllm.url, "--max-length", "1024", "--json"])
    out = capsys.readouterr().out
    report = {c["name"]: c for c in json.loads(out)["checks"]}
    assert status == 0
    assert report["usage"]["status"] == "warn" and "absurd" in report["usage"]["message"]
    assert "401 digits" in report["usage"]["message"] and str(absurd) not in out
    assert report["template"]["status"] == "ok" and report["template"]["data"]["server_tokens"] is None
    assert "relevance gap" in report["template"]["message"]  # judged without the count


def test_a_passing_check_logs_no_warning(fake_vllm, capsys, caplog) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.WARNING):
        assert main(["check", "--base-url", fake_vllm.url, "--max-length", "512"]) == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert all(line.startswith(STATUSES) for line in capsys.readouterr().out.splitlines())


@pytest.mark.slow  # loads the tokenizer for every check
def test_check_takes_a_tokenizer(fake_vllm, tiny_model_path: Path, capsys, caplog) -> None:  # type: ignore[no-untyped-def]
    fake_vllm.max_model_len = 400
    argv = ["check", "--base-url", fake_vllm.url, "--max-length", "1024", "--json"]
    with caplog.at_level(logging.WARNING):
        assert main([*argv, "--tokenizer", str(tiny_model_path)]) == 1
    report = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert report["reachable"]["status"] == "ok" and report["context length"]["status"] == "FAIL"
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
