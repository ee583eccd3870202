"""The rerank wire formats the remote backend speaks, as lookup tables of pure logic.

=========  ===============  ==============================  =================================
dialect    default path     request                         response
=========  ===============  ==============================  =================================
vllm       ``/v1/rerank``   model?, query, documents,       ``{"results": [{"index",
                            instruction?,                   "relevance_score"}], "usage"}``
                            chat_template_kwargs?,
                            max_tokens_per_doc?
sglang     ``/v1/rerank``   query, documents, instruct?,    ``[{"index", "score",
                            return_documents=false          "meta_info"?}]``
cohere     ``/v2/rerank``   model, query, documents, top_n  ``{"results": [{"index",
                                                            "relevance_score"}], "meta"}``
tei        ``/rerank``      query, texts, raw_scores=false, ``[{"index", "score"}]``
                            return_text=false,
                            truncate=false
infinity   ``/rerank``      model?, query, documents,       ``{"results": [{"index",
                            raw_scores=false,               "relevance_score"}], "usage"}``
                            return_documents=false
llamacpp   ``/v1/rerank``   query, documents                ``{"results": [{"index",
                                                            "relevance_score"}], "usage"}``
=========  ===============  ==============================  =================================

The hosted APIs (``dashscope``, ``siliconflow``, ``deepinfra``) are rows built from their
[`Provider`][qwen_rerank.remote._providers.Provider]: they apply the Qwen3 template
themselves, and their bodies, replies and error messages are read by ``_hosted``.

Fields in ``?`` are sent only with ``template="server"`` (the server applies the Qwen3
template and needs the instruction) or when set. Every server may sort its results:
they are always mapped back by ``index``.

TEI and Infinity serve the one-logit ``-seq-cls`` conversion and apply no Qwen3 prompt,
so they take ``template="client"`` only (``server_template=False``). Infinity strips
both texts of each pair before tokenizing them (``strips_texts=True``): the client then
sends the split of ``qwen_rerank.prompt.split_for_stripping_server``.

llama.cpp's ``llama-server --reranking`` always wraps each pair in the rerank template stored
in the GGUF, and that template spells out the default instruction: the dialect's
``applies_template`` and ``fixed_instruction`` say so, and the client refuses what the server
would silently do wrong (wrap a client-built prompt again, drop a custom instruction).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from qwen_rerank.prompt import DEFAULT_INSTRUCTION
from qwen_rerank.remote._hosted import encode_hosted_body, hosted_results_of, read_hosted_usage
from qwen_rerank.remote._providers import PROVIDERS, Provider
from qwen_rerank.results import Usage

__all__ = ["DIALECTS", "ApiName", "Dialect", "Usage", "break_placeholders", "encode_body", "read_usage"]

ApiName = Literal[
    "vllm", "sglang", "cohere", "tei", "infinity", "llamacpp", "dashscope", "siliconflow", "deepinfra"
]
"""The names of the wire formats, as ``RemoteReranker(api=...)`` takes them."""


@dataclass(frozen=True)
class Dialect:
    """How one kind of server wants a rerank request, and where its answer keeps the scores."""

    name: str
    default_path: str
    instruction_field: str | None  # where template="server" sends the instruction; None: nowhere
    sends_model: bool  # False: the server ignores a model name, so none is sent
    needs_model: bool
    takes_max_tokens_per_doc: bool
    results_key: str | None  # None: the body is a bare list of results
    score_key: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    top_n: bool = False  # send top_n = len(documents), for servers that default to fewer
    documents_key: str = "documents"
    server_template: bool = True  # False: the server never applies the Qwen3 prompt (TEI, Infinity)
    strips_texts: bool = False  # True: the server strips the query and each document (Infinity)
    applies_template: bool = False  # True: the server always wraps pairs itself (template="server" only)
    fixed_instruction: str | None = None  # the instruction the server's template always applies
    default_template: Literal["client", "server"] = "client"
    # Placeholders the server fills after the query is in place: one inside the query would be
    # filled too, so they are broken in the query before it is sent.
    query_placeholders: tuple[str, ...] = ()
    # The default max_documents_per_request: the most documents the server takes in one request.
    max_documents: int = 128
    hosted: Provider | None = None  # a hosted API: its bodies, replies and errors are its provider's


def _hosted_dialect(provider: Provider) -> Dialect:
    """The dialect of a hosted API: it applies the Qwen3 template itself, the instruction in its field."""
    return Dialect(
        provider.name,
        provider.path,
        instruction_field=provider.instruction_field,
        sends_model=True,
        needs_model=True,
        takes_max_tokens_per_doc=False,
        results_key="results",
        score_key="relevance_score",  # hosted_results_of gives every result this shape
        applies_template=True,
        default_template="server",
        hosted=provider,
    )


DIALECTS: dict[str, Dialect] = {
    "vllm": Dialect(
        "vllm",
        "/v1/rerank",
        instruction_field="instruction",
        sends_model=True,
        needs_model=False,
        takes_max_tokens_per_doc=True,
        results_key="results",
        score_key="relevance_score",
    ),
    "sglang": Dialect(
        "sglang",
        "/v1/rerank",
        instruction_field="instruct",
        sends_model=False,
        needs_model=False,
        takes_max_tokens_per_doc=False,
        results_key=None,
        score_key="score",
        extra={"return_documents": False},
    ),
    "cohere": Dialect(
        "cohere",
        "/v2/rerank",
        instruction_field=None,
        sends_model=True,
        needs_model=True,
        takes_max_tokens_per_doc=False,
        results_key="results",
        score_key="relevance_score",
        top_n=True,
    ),
    "tei": Dialect(
        "tei",
        "/rerank",
        instruction_field=None,
        sends_model=False,
        needs_model=False,
        takes_max_tokens_per_doc=False,
        results_key=None,
        score_key="score",
        # truncate=false: TEI would cut the pair's end, the suffix the score is read after.
        extra={"raw_scores": False, "return_text": False, "truncate": False},
        documents_key="texts",
        server_template=False,
        max_documents=32,  # TEI's default --max-client-batch-size
    ),
    "infinity": Dialect(
        "infinity",
        "/rerank",
        instruction_field=None,
        sends_model=True,
        needs_model=False,
        takes_max_tokens_per_doc=False,
        results_key="results",
        score_key="relevance_score",
        extra={"raw_scores": False, "return_documents": False},
        server_template=False,
        strips_texts=True,
    ),
    "llamacpp": Dialect(
        "llamacpp",
        "/v1/rerank",
        instruction_field=None,
        sends_model=False,
        needs_model=False,
        takes_max_tokens_per_doc=False,
        results_key="results",
        score_key="relevance_score",
        applies_template=True,
        fixed_instruction=DEFAULT_INSTRUCTION,
        default_template="server",
        query_placeholders=("{document}",),
    ),
    **{name: _hosted_dialect(provider) for name, provider in PROVIDERS.items()},
}


def break_placeholders(dialect: Dialect, query: str) -> str:
    """``query`` with each of the dialect's template placeholders broken by a zero-width space.

    llama-server puts the query into its template first and then replaces every
    ``{document}`` in the result, so a query that spells ``{document}`` would get
    the document pasted into it.
    """
    for placeholder in dialect.query_placeholders:
        query = query.replace(placeholder, placeholder[0] + "\u200b" + placeholder[1:])
    return query


def encode_body(
    dialect: Dialect,
    query: str | dict[str, Any],
    documents: Sequence[str | dict[str, Any]],
    model: str | None,
    *,
    instruction: str | None = None,
    max_tokens_per_doc: int | None = None,
    fps: float | None = None,
) -> bytes:
    """The JSON body of one rerank request in ``dialect``; ``instruction`` only for a server template.

    A multimodal query or document is vLLM's content dict (`qwen_rerank.remote._parts`), or
    for a hosted API its element object (`qwen_rerank.remote._elements`), with ``fps``."""
    if dialect.hosted is not None:
        return encode_hosted_body(
            dialect.hosted, model or "", query, documents, instruction=instruction, fps=fps
        )
    body: dict[str, Any] = {"query": query, dialect.documents_key: list(documents)}
    if model is not None and dialect.sends_model:
        body["model"] = model
    if instruction is not None and dialect.instruction_field is not None:
        body[dialect.instruction_field] = instruction
        if dialect.name == "vllm":
            body["chat_template_kwargs"] = {"instruction": instruction}
    if max_tokens_per_doc is not None and dialect.takes_max_tokens_per_doc:
        body["max_tokens_per_doc"] = max_tokens_per_doc
    if dialect.top_n:
        body["top_n"] = len(documents)
    body.update(dialect.extra)
    # For ASCII text both settings give the same bytes, and ensure_ascii=True is ~2x faster
    # in CPython; other text is sent as UTF-8, half the size of \u escapes.
    ascii_only = (
        isinstance(query, str)
        and query.isascii()
        and all(isinstance(doc, str) and doc.isascii() for doc in documents)
    )
    return json.dumps(body, ensure_ascii=ascii_only, separators=(",", ":"), allow_nan=False).encode("utf-8")


def results_of(dialect: Dialect, data: Any) -> list[Any] | None:
    """The list of results in a parsed 200 body, or None when it has none where ``dialect`` puts it."""
    if dialect.hosted is not None:
        return hosted_results_of(dialect.hosted, data)
    results = (
        data
        if dialect.results_key is None
        else (data.get(dialect.results_key) if isinstance(data, dict) else None)
    )
    return results if isinstance(results, list) else None


def read_usage(dialect: Dialect, data: Any) -> Usage:
    """Token counts in a parsed 200 body; counts that are absent or not ints are ``None``."""
    if dialect.hosted is not None:
        return read_hosted_usage(dialect.hosted, data)
    if dialect.results_key is None:  # sglang: per-result meta_info
        counts = [_int(_get(item, "meta_info", "prompt_tokens")) for item in data]
        known = [c for c in counts if c is not None]
        total = sum(known) if known else None
        return Usage(total, total)
    usage = data.get("usage")
    if isinstance(usage, dict):
        prompt, total = _int(usage.get("prompt_tokens")), _int(usage.get("total_tokens"))
        return Usage(prompt if prompt is not None else total, total if total is not None else prompt)
    billed = _int(_get(data, "meta", "billed_units", "input_tokens"))
    if billed is None:
        billed = _int(_get(data, "meta", "tokens", "input_tokens"))
    return Usage(billed, billed)


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _int(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None
