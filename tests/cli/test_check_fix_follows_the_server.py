"""`check` tells which server answers before it judges, and each fix line follows that evidence.

The servers here answer as the real ones do where `check` looks: vLLM's model cards say
``owned_by: "vllm"`` (vllm/entrypoints/serve/engine/protocol.py, ``ModelCard``), SGLang's
``"sglang"`` (sglang/srt/entrypoints/openai/protocol.py, ``ModelCard``), and TEI's ``GET /info``
names ``model_type`` and ``max_client_batch_size`` (text-embeddings-inference, router ``Info``).
SGLang's ``/v1/rerank`` answers a bare list of ``{"score", "index", "meta_info"}``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from qwen_rerank.cli import main

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")

Reply = tuple[int, str, bytes]  # status, content type, body
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>...</form></body></html>"


def as_json(value: Any, status: int = 200) -> Reply:
    return status, "application/json", json.dumps(value).encode()


def models(owner: str) -> Reply:
    return as_json(
        {"object": "list", "data": [{"id": "Qwen/Qwen3-Reranker-0.6B", "object": "model", "owned_by": owner}]}
    )


NOT_FOUND = as_json({"detail": "Not Found"}, 404)
TEI_INFO = as_json(
    {
        "model_id": "Qwen/Qwen3-Reranker-0.6B-seq-cls",
        "model_type": {"reranker": {}},
        "max_client_batch_size": 32,
    }
)


def sglang_rerank(documents: list[str]) -> Reply:
    return as_json(
        [
            {"score": 0.5 + i / 100, "index": i, "meta_info": {"prompt_tokens": 9}}
            for i in range(len(documents))
        ]
    )


def logits_rerank(documents: list[str]) -> Reply:
    return as_json({"results": [{"index": i, "relevance_score": 3.5 - i} for i in range(len(documents))]})


def page(documents: list[str]) -> Reply:
    return 200, "text/html; charset=utf-8", LOGIN_PAGE


def not_found(documents: list[str]) -> Reply:
    return NOT_FOUND


def start(
    gets: dict[str, Reply], rerank: Callable[[list[str]], Reply], default_get: Reply = NOT_FOUND
) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._answer(*gets.get(self.path.split("?")[0], default_get))

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._answer(*rerank(body.get("documents") or body.get("texts") or []))

        def _answer(self, status: int, content_type: str, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    started: list[ThreadingHTTPServer] = []

    def serve(*args: Any, **kwargs: Any) -> str:
        server, url = start(*args, **kwargs)
        started.append(server)
        return url

    yield serve
    for server in started:
        server.shutdown()
        server.server_close()


def reachable(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> dict[str, Any]:
    assert main(["check", "--base-url", url, "--json", *extra]) == 1
    (finding,) = json.loads(capsys.readouterr().out)["checks"]
    assert finding["name"] == "reachable" and finding["status"] == "FAIL"
    return dict(finding)


def blames_no_gguf(fix: str) -> bool:
    return "GGUF" not in fix and "convert_hf_to_gguf" not in fix and "llama-server" not in fix


def test_a_login_page_answering_200_gets_the_generic_fix(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve({}, page, default_get=(200, "text/html", LOGIN_PAGE))
    finding = reachable(capsys, url)
    assert blames_no_gguf(finding["fix"]), finding["fix"]
    assert "web page" in finding["fix"] and "--base-url" in finding["fix"] and "proxy" in finding["fix"]


def test_a_login_page_as_text_gets_the_same_one_line_fix(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve({}, page, default_get=(200, "text/html", LOGIN_PAGE))
    assert main(["check", "--base-url", url]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("FAIL  reachable ")
    assert lines[1].startswith("      fix: ") and blames_no_gguf(lines[1])


def test_sglang_spoken_to_as_vllm_is_told_to_use_api_sglang(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve({"/v1/models": models("sglang")}, sglang_rerank)
    finding = reachable(capsys, url)
    assert "--api sglang" in finding["fix"] and blames_no_gguf(finding["fix"]), finding["fix"]


def test_vllm_answering_raw_logits_is_told_its_hf_overrides(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve({"/v1/models": models("vllm")}, logits_rerank)
    finding = reachable(capsys, url)
    assert "--hf_overrides" in finding["fix"] and "is_original_qwen3_reranker" in finding["fix"]
    assert blames_no_gguf(finding["fix"]), finding["fix"]


def test_tei_spoken_to_as_vllm_is_told_to_use_api_tei(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve({"/info": TEI_INFO}, not_found)
    finding = reachable(capsys, url)
    assert "--api tei" in finding["fix"], finding["fix"]


def test_an_unrecognised_server_with_a_malformed_reply_gets_no_gguf_blame(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve({}, logits_rerank)
    finding = reachable(capsys, url)
    assert blames_no_gguf(finding["fix"]) and "--api" in finding["fix"], finding["fix"]


def test_a_recognised_server_reached_with_its_api_is_ok(
    serve: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve({"/v1/models": models("sglang")}, sglang_rerank)
    main(["check", "--base-url", url, "--api", "sglang", "--json", "--max-length", "512"])
    report = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert report["server"]["status"] == "ok" and report["server"]["data"]["name"] == "sglang"
    assert "SGLang" in report["server"]["message"]


def test_cohere_with_the_server_template_is_not_blamed_for_the_instruction(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(
        ["check", "--tiny", "--api", "cohere", "--template", "server", "--max-length", "512", "--json"]
    )
    report = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    instruction = report["instruction"]
    assert instruction["status"] == "ok", instruction
    assert "ignores" not in instruction["message"] and "--template client" in instruction["fix"]
    assert status == 0


@pytest.mark.parametrize("api", ["tei", "infinity", "llamacpp"])
def test_tiny_refuses_a_dialect_the_fake_server_does_not_speak_in_one_line(
    api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--tiny", "--api", api]) == 2
    out = capsys.readouterr()
    assert out.out == "" and len(out.err.splitlines()) == 1
    assert out.err.startswith("qwen-rerank: error: --tiny") and f"--api {api}" in out.err
