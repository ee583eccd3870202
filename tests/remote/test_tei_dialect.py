"""The tei and infinity dialects: bodies, the template rule, and the split a stripping server needs.

A small loopback server here speaks TEI's ``/rerank`` as TEI scores a -seq-cls
model: it tokenizes each (query, text) pair with the real Qwen3 tokenizer,
runs transformers' Qwen3ForSequenceClassification, returns the sigmoid of the
logit, and sorts its results by score.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers

from qwen_rerank import InvalidInputError, LocalReranker, VLLMReranker
from qwen_rerank.prompt import (
    DEFAULT_INSTRUCTION,
    PAD_TOKEN,
    PromptTokenizer,
    format_prompt,
    split_for_stripping_server,
    split_prompts,
)
from qwen_rerank.remote._dialects import DIALECTS, encode_body
from qwen_rerank.testing import convert_to_seq_cls
from qwen_rerank.tools.diagnose import run_checks
from tests.helpers import max_diff

QUERY = "what is a giant panda?"
DOCS = [
    "The giant panda is a bear species endemic to China.",
    "Paris is the capital of France.",
    "",
    "what? yes!\n\nno  ",
    "  leading and trailing spaces  ",
    "数字 123 和中文文本。",
    "Pandas eat bamboo. " * 20,
]
INSTRUCTION = "Given a question about animals, retrieve the passage that answers it"


@pytest.fixture(scope="module")
def seq_cls_path(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_to_seq_cls(tiny_model_path, tmp_path_factory.mktemp("tei") / "tiny-seq-cls")


@pytest.fixture(scope="module")
def local(seq_cls_path: Path) -> LocalReranker:
    return LocalReranker(seq_cls_path, device="cpu", max_length=256)


@pytest.fixture(scope="module")
def tokenizer(seq_cls_path: Path) -> Any:
    return transformers.AutoTokenizer.from_pretrained(seq_cls_path)


class _TEIHandler(BaseHTTPRequestHandler):
    """POST /rerank as TEI answers it for a one-logit classifier; every body is kept in ``server.bodies``."""

    server: Any

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        if self.path != "/rerank" or not isinstance(body.get("texts"), list):
            self._send(422, {"error": "expected /rerank with query and texts", "error_type": "Validation"})
            return
        scores = [
            self.server.score(body["query"], text, body.get("raw_scores", False)) for text in body["texts"]
        ]
        results = [{"index": i, "score": s} for i, s in enumerate(scores)]
        self._send(200, sorted(results, key=lambda r: -r["score"]))

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TEIServer(ThreadingHTTPServer):
    def __init__(self, path: Path) -> None:
        super().__init__(("127.0.0.1", 0), _TEIHandler)
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        self.model = transformers.AutoModelForSequenceClassification.from_pretrained(path).eval()
        self.bodies: list[Any] = []
        self._lock = threading.Lock()

    def score(self, query: str, text: str, raw: bool) -> float:
        ids = self.tokenizer(query, text)["input_ids"]  # the pair as TEI encodes it: no stripping
        with self._lock, torch.inference_mode():
            logit = self.model(input_ids=torch.tensor([ids])).logits[0, 0]
        return float(logit if raw else torch.sigmoid(logit))


@contextlib.contextmanager
def _serving(path: Path) -> Iterator[str]:
    server = _TEIServer(path)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def tei_url(seq_cls_path: Path) -> Iterator[str]:
    with _serving(seq_cls_path) as url:
        yield url


def test_tei_body_has_texts_and_teis_flags() -> None:
    body = json.loads(encode_body(DIALECTS["tei"], "q", ["a", "b"], "served-name"))
    assert body == {
        "query": "q",
        "texts": ["a", "b"],
        "raw_scores": False,
        "return_text": False,
        "truncate": False,
    }


def test_infinity_body_is_its_rerank_request() -> None:
    body = json.loads(encode_body(DIALECTS["infinity"], "q", ["a"], "served-name"))
    assert body == {
        "query": "q",
        "documents": ["a"],
        "model": "served-name",
        "raw_scores": False,
        "return_documents": False,
    }
    assert "model" not in json.loads(encode_body(DIALECTS["infinity"], "q", ["a"], None))


@pytest.mark.parametrize("api", ["tei", "infinity"])
def test_template_server_is_refused_with_the_fix(api: str) -> None:
    with pytest.raises(InvalidInputError, match=r"applies no Qwen3 prompt.*template='client'"):
        VLLMReranker("http://127.0.0.1:9", api=api, template="server")  # type: ignore[arg-type]


def test_tei_scores_equal_local_mapped_by_index(tei_url: str, local: LocalReranker, mode: str) -> None:
    with VLLMReranker(tei_url, api="tei", tokenizer=str(local.model_name), max_length=256) as remote:
        for instruction in (None, INSTRUCTION):
            if mode == "sync":
                got = remote.score(QUERY, DOCS, instruction=instruction)
            else:
                got = asyncio.run(remote.ascore(QUERY, DOCS, instruction=instruction))
            # The server sorts by score: equal scores in input order prove the mapping by index.
            assert max_diff(got, local.score(QUERY, DOCS, instruction=instruction)) < 1e-5
        top = remote.rerank(QUERY, DOCS, top_n=3)
        assert [(r.index, r.document) for r in top] == [
            (r.index, r.document) for r in local.rerank(QUERY, DOCS, top_n=3)
        ]
        assert remote.last_usage is not None and remote.last_usage.prompt_tokens is None  # TEI reports none


def test_tei_without_a_tokenizer_sends_the_standard_split(tei_url: str, local: LocalReranker) -> None:
    # These four documents are short: local's max_length cuts none of them.
    with VLLMReranker(tei_url, api="tei") as remote:
        assert max_diff(remote.score(QUERY, DOCS[:4]), local.score(QUERY, DOCS[:4])) < 1e-5


def test_check_reports_the_client_template_for_tei(tei_url: str) -> None:
    findings = {f.name: f for f in run_checks(tei_url, api="tei", max_length=512)}
    assert findings["reachable"].status == "ok"
    assert findings["template"].status == "ok"
    assert "applies no Qwen3 prompt" in findings["template"].message


def test_check_fails_a_classifier_without_its_row_and_names_the_conversion(
    seq_cls_path: Path, tmp_path: Path
) -> None:
    model = transformers.AutoModelForSequenceClassification.from_pretrained(seq_cls_path)
    with torch.no_grad():
        model.score.weight.zero_()  # every logit 0: every score 0.5
    model.save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        (tmp_path / name).write_bytes((seq_cls_path / name).read_bytes())
    with _serving(tmp_path) as url:
        findings = {f.name: f for f in run_checks(url, api="tei", max_length=256)}
    assert findings["constant scores"].status == "FAIL"
    assert "convert_to_seq_cls" in str(findings["constant scores"].fix)


QUERIES = [QUERY, "no question mark", "ends with spaces   ", "熊猫吃什么？", "line\nbreaks\n"]


@pytest.mark.parametrize("query", QUERIES)
def test_the_stripping_split_tokenizes_exactly_as_the_whole_prompt(tokenizer: Any, query: str) -> None:
    """What Infinity does to a pair (strip both texts, tokenize them as a pair) leaves our split intact."""
    query_text, texts = split_for_stripping_server(*split_prompts(query, DOCS, DEFAULT_INSTRUCTION))
    for document, text in zip(DOCS, texts, strict=True):
        whole = tokenizer(format_prompt(query, document, DEFAULT_INSTRUCTION) + PAD_TOKEN)["input_ids"]
        assert tokenizer(query_text.strip(), text.strip())["input_ids"] == whole
    # The plain split loses the newlines the score is read after.
    plain_query, plain_texts = split_prompts(query, DOCS[:1], DEFAULT_INSTRUCTION)
    stripped = tokenizer(plain_query.strip(), plain_texts[0].strip())["input_ids"]
    assert stripped != tokenizer(format_prompt(query, DOCS[0], DEFAULT_INSTRUCTION))["input_ids"]


def test_the_stripping_split_survives_a_query_cut_by_truncation(tokenizer: Any) -> None:
    pt = PromptTokenizer(tokenizer)
    long_query = "panda " * 200
    query_text, texts = split_for_stripping_server(*pt.split_pairs(long_query, DOCS[:2], INSTRUCTION, 96))
    expected = pt.encode_pairs(long_query, DOCS[:2], INSTRUCTION, 96)
    for text, ids in zip(texts, expected, strict=True):
        assert tokenizer(query_text.strip(), text.strip())["input_ids"] == [*ids, tokenizer.pad_token_id]
