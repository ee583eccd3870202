"""The text rerankers of the three providers: each request checked, cut and scored as its reference says."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from qwen_rerank.testing.fake_hosted._common import FakeProvider, ranked
from qwen_rerank.testing.fake_hosted._vl import VL_MODELS, dashscope_vl

__all__ = ["DASHSCOPE_DEFAULT", "HANDLERS", "QWEN3_DEFAULT"]

# What DashScope applies without "instruct" (a third-party copy of its reference); note the period.
DASHSCOPE_DEFAULT = "Given a web search query, retrieve relevant passages that answer the query."
QWEN3_DEFAULT = "Given a web search query, retrieve relevant passages that answer the query"


def _dashscope(fake: FakeProvider, number: int, _: str | None, body: dict[str, Any]) -> dict[str, Any]:
    model, data, params = body.get("model"), body.get("input"), body.get("parameters") or {}
    if model not in fake.models:
        raise fake.error(400 if model is None else 404, "ModelNotFound", f"Model not exist: {model!r}.")
    if model in VL_MODELS:
        return dashscope_vl(fake, number, body)
    query = data.get("query") if isinstance(data, dict) else None
    if not isinstance(query, str) or not query:
        raise fake.invalid("Input query is required: input.query")
    documents = data.get("documents") if isinstance(data, dict) else None
    most = fake.limit("max_documents")
    if not isinstance(documents, list) or not documents or (most is not None and len(documents) > most):
        raise fake.invalid(
            "<400> InternalError.Algo.InvalidParameter: Value error, batch size of documents is invalid, "
            f"it should not be empty or larger than {most or 500}.: input.documents"
        )
    documents = fake.check_strings(documents, "input.documents")
    counts = [fake.tokens(d) for d in documents]
    total, cap = fake.tokens(query) * len(documents) + sum(counts), fake.limit("max_request_tokens")
    if cap is not None and total > cap:
        raise fake.invalid(f"Range of input length should be [1, {cap}]")
    item = fake.limit("max_item_tokens")
    query = fake.cut(number, "query", query, item)
    documents = [fake.cut(number, f"document {i}", d, item) for i, d in enumerate(documents)]
    instruct = params.get("instruct")
    instruction = instruct if isinstance(instruct, str) and fake.applies_instruction else DASHSCOPE_DEFAULT
    results = ranked(fake.score([(query, d) for d in documents], instruction), documents, params)
    usage = fake.tokens(query) * len(documents) + sum(fake.tokens(d) for d in documents)
    return {"output": {"results": results}, "usage": {"total_tokens": usage}, "request_id": str(uuid.uuid4())}


def _siliconflow(fake: FakeProvider, number: int, _: str | None, body: dict[str, Any]) -> dict[str, Any]:
    model, query = body.get("model"), body.get("query")
    if model not in fake.models:
        raise fake.error(400, 20012, "Model does not exist. Please check it carefully.")
    if not isinstance(query, str) or not query:
        raise fake.invalid("query: length must be >= 1")
    documents = fake.check_strings(body.get("documents"), "documents")
    most = fake.limit("max_documents")
    if most is not None and len(documents) > most:
        raise fake.invalid(f"documents: at most {most} items")
    for name in ("max_chunks_per_doc", "overlap_tokens"):
        if name in body:
            raise fake.invalid(
                f"{name} is supported by BAAI/bge-reranker-v2-m3 and bce-reranker-base_v1 only"
            )
    instruction = body.get("instruction", QWEN3_DEFAULT)
    if not isinstance(instruction, str) or not instruction:
        raise fake.invalid("instruction: length must be >= 1")
    pairs = _cut_pairs(fake, number, [query] * len(documents), documents)
    results = ranked(
        fake.score(pairs, instruction if fake.applies_instruction else QWEN3_DEFAULT), documents, body
    )
    tokens = {"input_tokens": sum(fake.tokens(q) + fake.tokens(d) for q, d in pairs), "output_tokens": 0}
    if fake.usage_shape == "meta":
        return {
            "id": uuid.uuid4().hex,
            "results": results,
            "meta": {"tokens": tokens, "billed_units": tokens},
        }
    return {"id": uuid.uuid4().hex, "results": results, "tokens": tokens}


def _deepinfra(fake: FakeProvider, number: int, _model: str | None, body: dict[str, Any]) -> dict[str, Any]:
    queries = fake.check_strings(body.get("queries"), "queries")
    documents = fake.check_strings(body.get("documents"), "documents")
    most = fake.limit("max_documents")
    for name, items in (("queries", queries), ("documents", documents)):
        if most is not None and len(items) > most:
            message = f"List should have at most {most} items after validation, not {len(items)}"
            raise fake.invalid(message, kind="too_long", loc=["body", name])
    if len(queries) not in (1, len(documents)):
        counts = f"queries ({len(queries)}) and documents ({len(documents)})"
        raise fake.invalid(f"Value error, The number of {counts} must be the same.")
    instruction = body.get("instruction")
    if instruction is not None and not isinstance(instruction, str):
        raise fake.invalid("instruction must be a string")
    applied = instruction if instruction is not None and fake.applies_instruction else QWEN3_DEFAULT
    pairs = _cut_pairs(fake, number, queries * len(documents) if len(queries) == 1 else queries, documents)
    scores = fake.score(pairs, applied)
    used = sum(fake.tokens(q) + fake.tokens(d) for q, d in pairs)
    status = {"status": "succeeded", "runtime_ms": 1, "cost": used * 1e-8, "tokens_input": used}
    return {
        "scores": scores,
        "input_tokens": used,
        "request_id": uuid.uuid4().hex[:24],
        "inference_status": status,
    }


HANDLERS: dict[str, Callable[[FakeProvider, int, str | None, dict[str, Any]], dict[str, Any]]] = {
    "dashscope": _dashscope,
    "siliconflow": _siliconflow,
    "deepinfra": _deepinfra,
}


def _cut_pairs(
    fake: FakeProvider, number: int, queries: list[str], documents: list[str]
) -> list[tuple[str, str]]:
    """Pairs whose query and document together stay within the pair limit, documents cut to fit."""
    cap = fake.limit("max_pair_tokens")
    pairs = []
    for i, (query, doc) in enumerate(zip(queries, documents, strict=True)):
        room = None if cap is None else max(0, cap - fake.tokens(query))
        pairs.append((query, fake.cut(number, f"document {i}", doc, room)))
    return pairs
