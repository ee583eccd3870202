"""long_documents="truncate" | "chunk": MaxP windows, what results say was cut, local and remote."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from qwen_rerank import InvalidInputError, LocalReranker, RerankResult, create_reranker
from qwen_rerank._chunking import LongDocuments, window_starts
from qwen_rerank.remote import VLLMReranker

MAX_LENGTH = 128
QUERY = "Which clause covers termination for convenience?"
CLAUSES = [f"Clause {i}: the parties agree on item {i} of schedule {i % 7}." for i in range(60)]
CONTRACT = " ".join(CLAUSES[:40]) + " Termination for convenience: either party may end it. " + CLAUSES[-1]
CJK = "本合同的各方同意以下条款。" * 40 + "任何一方均可提前三十天书面通知终止本合同。"
SHORT = ["The termination clause is on page two.", "A short note.", ""]


@pytest.fixture(scope="module")
def truncating(tiny_model_path: Path) -> LocalReranker:
    return LocalReranker(str(tiny_model_path), device="cpu", max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def chunking(tiny_model_path: Path) -> LocalReranker:
    return LocalReranker(str(tiny_model_path), device="cpu", max_length=MAX_LENGTH, long_documents="chunk")


def by_index(results: list[RerankResult]) -> list[RerankResult]:
    return sorted(results, key=lambda r: r.index)


def rescore_best(reranker: LocalReranker, document: str, result: RerankResult) -> float:
    """The score of the exact token ids of the window ``result.span`` names, run alone."""
    plan = reranker._plan_windows(QUERY, [document], reranker.instruction)
    assert plan is not None
    (text,) = [t for t, span in zip(plan.texts, plan.spans, strict=True) if span == result.span]
    if result.span is not None and result.span[0] > 0:
        assert text == document[result.span[0] : result.span[1]]
    ids = reranker.prompt_tokenizer.encode_pairs(QUERY, [text], reranker.instruction, MAX_LENGTH)[0]
    assert len(ids) <= MAX_LENGTH
    return reranker._scorer.score_rows([ids])[0]


def test_documents_that_fit_score_as_in_truncate_mode(truncating, chunking) -> None:  # type: ignore[no-untyped-def]
    plain, chunked = by_index(truncating.rerank(QUERY, SHORT)), by_index(chunking.rerank(QUERY, SHORT))
    for a, b in zip(plain, chunked, strict=True):
        assert abs(a.score - b.score) <= 1e-6
        assert (a.truncated, a.span, b.truncated, b.span) == (False, None, False, None)
    assert chunking.score(QUERY, SHORT) == [r.score for r in chunked]


@pytest.mark.parametrize("document", [CONTRACT, CJK], ids=["english", "cjk"])
def test_long_document_best_window(truncating, chunking, document: str) -> None:  # type: ignore[no-untyped-def]
    (cut,) = truncating.rerank(QUERY, [document])
    (best,) = chunking.rerank(QUERY, [document])
    assert cut.truncated and cut.span is None
    assert not best.truncated and best.score >= cut.score - 1e-6
    assert best.span is not None
    start, end = best.span
    assert 0 <= start < end <= len(document) and document[start:end].strip()
    assert abs(rescore_best(chunking, document, best) - best.score) <= 1e-5


def test_windows_cover_the_whole_document(chunking) -> None:  # type: ignore[no-untyped-def]
    plan = chunking._plan_windows(QUERY, [CONTRACT, "short"], chunking.instruction)
    spans = [span for span, owner in zip(plan.spans, plan.owners, strict=True) if owner == 0]
    assert plan.texts[0] == CONTRACT and spans[0] is not None and spans[0][0] == 0  # the truncated document
    assert spans[-1] is not None and spans[-1][1] == len(CONTRACT.rstrip())
    for (_, end), (start, _) in itertools.pairwise(spans):  # type: ignore[misc]
        assert start < end  # neighbours overlap: no text falls between windows
    assert plan.owners[-1] == 1 and plan.spans[-1] is None


@pytest.mark.parametrize(("size", "overlap"), [(1, 0), (8, 7), (5, 2), (40, 0)])
def test_window_starts(size: int, overlap: int) -> None:
    for count in (size + 1, 3 * size + 2, 97):
        if count <= size:
            continue
        starts = window_starts(count, size, overlap)
        assert starts[0] == 0 and starts[-1] + size == count
        assert all(b - a <= size - overlap for a, b in itertools.pairwise(starts))
        assert starts == sorted(set(starts))


@pytest.mark.parametrize(("tokens", "overlap"), [(1, 0), (6, 5)], ids=["one-token", "overlap-window-1"])
def test_small_windows(tiny_model_path: Path, truncating, tokens: int, overlap: int) -> None:  # type: ignore[no-untyped-def]
    document = " ".join(CLAUSES[:12])
    reranker = LocalReranker(
        str(tiny_model_path),
        device="cpu",
        max_length=MAX_LENGTH,
        long_documents="chunk",
        chunk_tokens=tokens,
        chunk_overlap=overlap,
    )
    plan = reranker._plan_windows(QUERY, [document], reranker.instruction)
    assert plan is not None and len(plan.texts) > 2
    assert all(0 <= s[0] < s[1] <= len(document) for s in plan.spans if s is not None)
    (best,) = reranker.rerank(QUERY, [document])
    (cut,) = truncating.rerank(QUERY, [document])
    assert best.score >= cut.score - 1e-6  # the first window is still the truncated document
    assert abs(rescore_best(reranker, document, best) - best.score) <= 1e-5


def test_empty_document_and_empty_list(chunking, truncating) -> None:  # type: ignore[no-untyped-def]
    (empty,) = chunking.rerank(QUERY, [""])
    assert empty.span is None and not empty.truncated
    assert abs(empty.score - truncating.score(QUERY, [""])[0]) <= 1e-6
    assert chunking.rerank(QUERY, []) == []


def test_query_leaving_no_room_falls_back_to_truncation(chunking, truncating) -> None:  # type: ignore[no-untyped-def]
    query = "panda " * 200
    (result,) = chunking.rerank(query, [CONTRACT])
    assert result.truncated and result.span is None
    assert abs(result.score - truncating.score(query, [CONTRACT])[0]) <= 1e-6


def test_settings_are_checked(tiny_model_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="'truncate' or 'chunk'"):
        LongDocuments.of("split")
    with pytest.raises(InvalidInputError, match="smaller than chunk_tokens"):
        LongDocuments.of("chunk", 8, 8)
    with pytest.raises(InvalidInputError, match="chunk_tokens must be a positive int"):
        LongDocuments.of("chunk", 0)
    with pytest.raises(InvalidInputError, match="apply to long_documents='chunk' only"):
        LongDocuments.of("truncate", chunk_overlap=3)
    assert LongDocuments.of("chunk").window(1000) == (1000, 64)
    assert LongDocuments.of("chunk").window(40) == (40, 10)
    assert LongDocuments.of("chunk", 5000, 10).window(300) == (300, 10)
    with pytest.raises(InvalidInputError, match="needs tokenizer="):
        VLLMReranker("http://127.0.0.1:9", long_documents="chunk")


def test_create_reranker_passes_the_option(tiny_model_path: Path) -> None:
    local = create_reranker(str(tiny_model_path), device="cpu", long_documents="chunk", chunk_tokens=32)
    remote = create_reranker(
        base_url="http://127.0.0.1:9", tokenizer=str(tiny_model_path), long_documents="chunk"
    )
    assert local.long_documents == remote.long_documents == "chunk"
    assert create_reranker(base_url="http://127.0.0.1:9").long_documents == "truncate"


def test_remote_chunk_mode_matches_local(
    fake_vllm, monkeypatch, tiny_model_path: Path, chunking, mode: str
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(fake_vllm, "max_model_len", MAX_LENGTH)  # longer prompts get HTTP 400, as in vLLM
    docs = [CONTRACT, *SHORT, CJK]
    remote = VLLMReranker(
        fake_vllm.url,
        tokenizer=str(tiny_model_path),
        max_length=MAX_LENGTH,
        long_documents="chunk",
        max_documents_per_request=7,  # the windows go out in several requests
    )
    with remote:
        got = remote.rerank(QUERY, docs) if mode == "sync" else asyncio.run(remote.arerank(QUERY, docs))
    assert len(fake_vllm.rerank_requests) > 1
    for a, b in zip(by_index(got), by_index(chunking.rerank(QUERY, docs)), strict=True):
        assert abs(a.score - b.score) <= 1e-4 and a.truncated == b.truncated
        # A window sent as text may tokenize to a token more than inside its document, and is
        # cut to fit: the remote span then ends a few characters early, as what was sent does.
        assert (a.span is None) == (b.span is None)
        if a.span is not None and b.span is not None:
            assert a.span[0] == b.span[0] and b.span[1] - 8 <= a.span[1] <= b.span[1]


def test_remote_truncate_mode_reports_truncation(fake_vllm, monkeypatch, tiny_model_path: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(fake_vllm, "max_model_len", MAX_LENGTH)
    with VLLMReranker(fake_vllm.url, tokenizer=str(tiny_model_path), max_length=MAX_LENGTH) as remote:
        flags = {r.index: r.truncated for r in remote.rerank(QUERY, [CONTRACT, "short"])}
    assert flags == {0: True, 1: False}


def test_adapters_report_truncated_and_best_span(chunking, truncating) -> None:  # type: ignore[no-untyped-def]
    from langchain_core.documents import Document
    from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode

    from langchain_qwen_rerank import QwenRerank as LangChainRerank
    from llamaindex_qwen_rerank import QwenRerank as LlamaIndexRerank

    texts = [CONTRACT, "A short note."]
    expected = {r.index: r for r in chunking.rerank(QUERY, texts)}
    docs = [Document(page_content=t, metadata={"n": k}, id=str(k)) for k, t in enumerate(texts)]
    out = LangChainRerank(reranker=chunking).compress_documents(docs, QUERY)
    for doc in out:
        result = expected[doc.metadata["n"]]
        assert doc.metadata["best_span"] == (None if result.span is None else list(result.span))
        assert doc.metadata["truncated"] is False
    assert all("best_span" not in d.metadata for d in docs)  # the inputs stay untouched
    cut = LangChainRerank(reranker=truncating).compress_documents(docs, QUERY)
    assert {d.metadata["n"]: d.metadata["truncated"] for d in cut} == {0: True, 1: False}

    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(k)), score=0.5) for k, t in enumerate(texts)]
    scored = LlamaIndexRerank(reranker=chunking).postprocess_nodes(nodes, query_str=QUERY)
    for item in scored:
        result = expected[int(item.node.node_id)]
        assert item.node.metadata["best_span"] == (None if result.span is None else list(result.span))
        assert "best_span" not in item.node.get_content(metadata_mode=MetadataMode.LLM)
    assert all(not n.node.metadata for n in nodes)


def test_cli_long_documents_option(
    tiny_model_path: Path, chunking, truncating, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    import json

    from qwen_rerank.cli import main

    path = tmp_path / "docs.txt"
    path.write_text(CONTRACT + "\nA short note.\n", encoding="utf-8")
    scores = {}
    for mode, reference in (("chunk", chunking), ("truncate", truncating)):
        argv = ["rank", "--model", str(tiny_model_path), "--device", "cpu", "--query", QUERY, str(path)]
        assert main([*argv, "--max-length", str(MAX_LENGTH), "--long-documents", mode, "--json"]) == 0
        captured = capsys.readouterr()
        results = json.loads(captured.out)["results"]
        scores[mode] = {r["index"]: r["score"] for r in results}
        contract = next(r for r in results if r["index"] == 0)
        if mode == "chunk":
            start, end = contract["span"]
            assert not contract["truncated"] and 0 <= start < end <= len(CONTRACT)
            assert "lost" not in captured.err
        else:
            assert contract["truncated"] and contract["span"] is None
            assert "1 document of those shown lost its end to --max-length" in captured.err
        expected = reference.score(QUERY, [CONTRACT, "A short note."])
        assert abs(scores[mode][0] - expected[0]) <= 1e-5
    assert scores["chunk"][0] >= scores["truncate"][0] - 1e-6
