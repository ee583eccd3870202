"""api="tei" sends at most 32 documents per request by default: TEI's --max-client-batch-size."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from qwen_rerank import VLLMReranker

TEI_LIMIT = 32  # text-embeddings-router's default --max-client-batch-size


class _TEI(BaseHTTPRequestHandler):
    """TEI's /rerank as its default limit has it: more than 32 texts is a 413."""

    batches: ClassVar[list[int]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        texts = body["texts"]
        self.batches.append(len(texts))
        if len(texts) > TEI_LIMIT:
            status, reply = (
                413,
                {
                    "error": f"batch size {len(texts)} > maximum allowed batch size {TEI_LIMIT}",
                    "error_type": "Validation",
                },
            )
        else:
            status, reply = 200, [{"index": i, "score": 0.5} for i in range(len(texts))]
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tei_url() -> Iterator[str]:
    _TEI.batches = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TEI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_long_list_fits_teis_default_limit(tei_url: str, mode: str) -> None:
    docs = [f"document {i}" for i in range(70)]
    with VLLMReranker(tei_url, api="tei", max_retries=0) as reranker:
        assert reranker.max_documents_per_request == TEI_LIMIT
        scores = reranker.score("q", docs) if mode == "sync" else await reranker.ascore("q", docs)
    assert scores == [0.5] * len(docs)
    assert sorted(_TEI.batches) == [23, 23, 24]


def test_other_dialects_keep_128_and_an_explicit_size_is_kept() -> None:
    assert VLLMReranker("http://127.0.0.1:9").max_documents_per_request == 128
    assert VLLMReranker("http://127.0.0.1:9", api="infinity").max_documents_per_request == 128
    assert (
        VLLMReranker("http://127.0.0.1:9", api="tei", max_documents_per_request=64).max_documents_per_request
        == 64
    )
