"""The wire formats the fake server speaks: vLLM's, SGLang's and Cohere's (the package docstring).

A request is checked and answered the vLLM way first (`check_request`, `vllm_response`); `shape`
then rewrites that answer in the server's dialect. The prompt is built here too, since each
dialect names its instruction field differently.
"""

from __future__ import annotations

import uuid
from typing import Any

APIS = frozenset({"vllm", "sglang", "cohere"})

# The Qwen3-Reranker prompt, spelled here independently of qwen_rerank.prompt, as a correct
# score template renders it (qwen-rerank's, qwen_rerank.prompt.server_template_path()).
_SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
_TEMPLATE = (
    "<|im_start|>system\n" + _SYSTEM + "<|im_end|>\n<|im_start|>user\n"
    "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}<|im_end|>\n"
    "<|im_start|>assistant\n<think>\n\n</think>\n\n"
)


class Refusal(Exception):
    """A request the server answers with an error ``status`` and ``body`` instead of results."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def error_body(message: str, shape: str, *, code: int = 400, kind: str = "BadRequestError") -> Any:
    """An error body in one of the shapes servers send: ``"error"``, ``"flat"`` or ``"string"``."""
    if shape == "flat":
        return {"object": "error", "message": message, "type": kind, "param": None, "code": code}
    if shape == "string":
        return {"error": message}
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def check_request(api: str, body: dict[str, Any], served_model_name: str) -> None:
    """Raise the `Refusal` the server sends for a rerank body it does not take."""
    query, documents = body.get("query"), body.get("documents")
    # vLLM also takes a content dict as the query (checked where it is read, `_content.as_text`).
    if not (isinstance(query, str) or api == "vllm") or not isinstance(documents, list):
        raise Refusal(400, error_body("query must be a string and documents a list", "error"))
    if not documents:
        raise Refusal(400, error_body("At least one text_pair element must be given", "error"))
    model = body.get("model") if api != "sglang" else None  # SGLang ignores it
    if api == "cohere" and model is None:
        raise Refusal(400, error_body("model is required", "error"))
    if model is not None and model != served_model_name:
        raise Refusal(
            404, error_body(f"The model `{model}` does not exist.", "error", code=404, kind="NotFoundError")
        )


def max_tokens_per_doc(api: str, body: dict[str, Any]) -> Any:
    """vLLM's ``max_tokens_per_doc`` as sent (0: no cut); the other dialects have none."""
    return (body.get("max_tokens_per_doc") or 0) if api == "vllm" else 0


def prompt_text(api: str, template: bool | str, query: str, document: str, body: dict[str, Any]) -> str:
    """The text scored for one pair: ``query + document``, or the Qwen3 template around them.

    ``template="vllm"`` renders it as vLLM 0.33 renders the template it ships
    (``qwen3_reranker.jinja``): Jinja drops the file's last newline, so the prompt ends in
    ``"</think>\n"`` instead of ``"</think>\n\n"``.
    """
    if not template:
        return query + document
    kwargs = body.get("chat_template_kwargs") or {}
    if api == "sglang":
        instruction = body.get("instruct") or DEFAULT_INSTRUCTION
    elif api == "cohere":
        instruction = DEFAULT_INSTRUCTION
    else:
        instruction = body.get("instruction") or kwargs.get("instruction") or DEFAULT_INSTRUCTION
    text = _TEMPLATE.format(instruction=instruction, query=query, document=document)
    return text[:-1] if template == "vllm" else text


def vllm_response(
    body: dict[str, Any], scores: list[float], counts: list[int], *, model: str, legacy_usage: bool
) -> dict[str, Any]:
    """vLLM's answer: results by score, highest first, cut to ``top_n``, with the usage.

    Each result keeps its token count under ``_tokens`` until `shape` takes it out.
    """
    documents = body["documents"]
    order = sorted(range(len(documents)), key=lambda i: -scores[i])
    top_n = body.get("top_n") or 0
    if top_n > 0:
        order = order[:top_n]
    results = [
        {
            "index": i,
            "document": {"text": documents[i], "multi_modal": None},
            "relevance_score": scores[i],
            "_tokens": counts[i],
        }
        for i in order
    ]
    tokens = sum(counts)
    usage: dict[str, int] = {"total_tokens": tokens}
    if not legacy_usage:
        usage["prompt_tokens"] = tokens
    return {"id": f"score-{uuid.uuid4().hex[:16]}", "model": model, "usage": usage, "results": results}


def shape(api: str, response: dict[str, Any], body: dict[str, Any]) -> Any:
    """A vLLM-shaped 200 response in dialect ``api``."""
    results = response["results"]
    tokens = [r.pop("_tokens", 0) for r in results]
    if api == "vllm":
        return response
    if api == "sglang":
        return _sglang(results, tokens, keep_text=body.get("return_documents", True))
    return _cohere(response["id"], results, tokens)


def _sglang(results: list[dict[str, Any]], tokens: list[int], *, keep_text: Any) -> list[dict[str, Any]]:
    return [
        {
            "score": r["relevance_score"],
            "index": r["index"],
            **({"document": r["document"]["text"]} if keep_text else {}),
            "meta_info": {"id": uuid.uuid4().hex, "prompt_tokens": n, "finish_reason": None},
        }
        for r, n in zip(results, tokens, strict=True)
    ]


def _cohere(response_id: str, results: list[dict[str, Any]], tokens: list[int]) -> dict[str, Any]:
    return {
        "id": response_id,
        "results": [{"index": r["index"], "relevance_score": r["relevance_score"]} for r in results],
        "meta": {
            "api_version": {"version": "2"},
            "billed_units": {"search_units": 1},
            "tokens": {"input_tokens": sum(tokens), "output_tokens": 0},
        },
    }
