"""The hosted providers' wire formats: request bodies in, scores, usage and error messages out.

- `encode_hosted_body`: the JSON body of one request, the instruction where the
  provider reads it (always sent, so that no provider default stands in for it).
- `hosted_results_of` and `read_hosted_usage`: where a 200 body keeps its results
  and its token count (the two hooks a [`Dialect`][qwen_rerank.remote._dialects.Dialect]
  answers for the self-hosted servers).
- `hosted_error_text`: the message of a provider's error body, with its code.

A 200 body is checked and mapped back by ``index`` by the one rule every dialect
uses, [`parse_scores`][qwen_rerank.remote._replies.parse_scores].

All of it is pure: no I/O, the same for sync and async calls.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.remote._providers import Provider
from qwen_rerank.results import Usage

__all__ = [
    "check_hosted_instruction",
    "encode_hosted_body",
    "hosted_error_text",
    "hosted_path",
    "hosted_results_of",
    "hosted_results_shape",
    "read_hosted_usage",
]


def hosted_path(provider: Provider, model: str) -> str:
    """The request path of ``model`` at ``provider`` (DeepInfra names the model in the path)."""
    return provider.path.replace("{model}", model)


def encode_hosted_body(
    provider: Provider,
    model: str,
    query: str | dict[str, Any],
    documents: Sequence[str | dict[str, Any]],
    *,
    instruction: str | None,
    fps: float | None = None,
) -> bytes:
    """The JSON body of one rerank request to ``provider``.

    Every document's result is asked for (``top_n`` = all, no echoed text). A query or
    document may be an object in DashScope's element form (``_elements``), for its
    multimodal model; ``fps`` goes into DashScope's ``parameters.fps``. Raises
    [`InvalidInputError`][qwen_rerank.InvalidInputError] for an instruction the
    provider cannot take: any, where it has no field for one; an empty one, where its
    reference requires a non-empty one; and for an object sent to another provider.
    """
    check_hosted_instruction(provider, instruction)
    docs = list(documents)
    text_only = isinstance(query, str) and all(isinstance(doc, str) for doc in docs)
    if provider.name != "dashscope" and not text_only:
        raise InvalidInputError(f"{provider.title} scores text only; a request holds an image or video.")
    body: dict[str, Any]
    if provider.name == "dashscope":
        body = {
            "model": model,
            "input": {"query": query, "documents": docs},
            "parameters": {"top_n": len(docs), "return_documents": False},
        }
        if fps is not None:
            body["parameters"]["fps"] = fps
    elif provider.name == "siliconflow":
        body = {
            "model": model,
            "query": query,
            "documents": docs,
            "top_n": len(docs),
            "return_documents": False,
        }
    else:  # deepinfra: parallel arrays, one query per document; the model is in the path
        body = {"queries": [query] * len(docs), "documents": docs}
    if instruction is not None and provider.instruction_field is not None:
        _put(body, provider.instruction_field, instruction)
    ascii_only = _is_ascii(query) and all(_is_ascii(doc) for doc in docs) and (instruction or "").isascii()
    return json.dumps(body, ensure_ascii=ascii_only, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _is_ascii(item: str | dict[str, Any]) -> bool:
    values = [item] if isinstance(item, str) else list(item.values())
    return all(isinstance(value, str) and value.isascii() for value in values)


def check_hosted_instruction(provider: Provider, instruction: str | None) -> None:
    """Raise [`InvalidInputError`][qwen_rerank.InvalidInputError] for an instruction ``provider`` refuses."""
    if instruction is None:
        return
    if provider.instruction_field is None:
        raise InvalidInputError(
            f"api={provider.name!r} has no instruction field, so a custom instruction would be dropped. "
            "Leave instruction unset, or use a provider that takes one."
        )
    if not instruction and not provider.empty_instruction_ok:
        raise InvalidInputError(
            f"api={provider.name!r} refuses an empty instruction (its API requires at least one "
            "character). Leave instruction unset for the default, or pass a non-empty one."
        )


def _put(body: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        body = body.setdefault(key, {})
    body[last] = value


def hosted_results_of(provider: Provider, data: Any) -> list[Any] | None:
    """The results of a parsed 200 body as ``{"index", "relevance_score"}`` items, or None.

    DeepInfra answers a bare ``scores`` list in input order: its items get their
    position as ``index``.
    """
    if not isinstance(data, dict):
        return None
    if provider.name == "deepinfra":
        scores = data.get("scores")
        if not isinstance(scores, list):
            return None
        return [{"index": i, "relevance_score": score} for i, score in enumerate(scores)]
    results = _get(data, "output", "results") if provider.name == "dashscope" else data.get("results")
    return results if isinstance(results, list) else None


def read_hosted_usage(provider: Provider, data: Any) -> Usage:
    """The token count of a parsed 200 body; ``None`` counts where the provider reported none.

    DashScope: ``usage.total_tokens`` (``usage.input_tokens`` in its SDK's tests).
    SiliconFlow: ``tokens.input_tokens`` (``meta.tokens`` or ``meta.billed_units`` in
    the newer reference). DeepInfra: ``input_tokens``.
    """
    paths: tuple[tuple[str, ...], ...]
    if provider.name == "dashscope":
        paths = (("usage", "total_tokens"), ("usage", "input_tokens"))
    elif provider.name == "siliconflow":
        paths = (
            ("tokens", "input_tokens"),
            ("meta", "tokens", "input_tokens"),
            ("meta", "billed_units", "input_tokens"),
        )
    else:
        paths = (("input_tokens",), ("inference_status", "tokens_input"))
    count = next((n for n in (_count(_get(data, *path)) for path in paths) if n is not None), None)
    return Usage(count, count)


def hosted_results_shape(provider: Provider) -> str:
    """Where a 200 body of ``provider`` keeps its results, in words, for an error message."""
    return {"dashscope": "an output.results list", "deepinfra": "a scores list"}.get(
        provider.name, "a results list"
    )


def hosted_error_text(provider: Provider, data: Any) -> str | None:
    """The message of a provider's parsed error body, with its code; None where it holds none.

    DashScope: ``{"code", "message", "request_id"}`` -> ``"code: message (request_id ...)"``.
    SiliconFlow: ``{"code", "message", "data"}`` -> ``"message (code ...)"``, or a bare
    JSON string. DeepInfra: ``{"detail": ...}``, a string, ``{"error": ...}``, or
    FastAPI's list of validation errors.
    """
    if isinstance(data, str):
        return data
    if not isinstance(data, dict):
        return None
    if provider.name == "deepinfra" or "detail" in data:
        return _detail(data.get("detail"))
    message, code = data.get("message"), data.get("code")
    if not isinstance(message, str):
        return str(code) if isinstance(code, (str, int)) else None
    if provider.name == "dashscope":
        text = f"{code}: {message}" if isinstance(code, str) and code else message
        request_id = data.get("request_id")
        return f"{text} (request_id {request_id})" if isinstance(request_id, str) and request_id else text
    return f"{message} (code {code})" if isinstance(code, (str, int)) and code != "" else message


def _detail(detail: Any) -> str | None:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict):
        error = detail.get("error")
        return error if isinstance(error, str) else json.dumps(detail)[:1000]
    if isinstance(detail, list):
        parts = []
        for item in detail[:5]:
            if isinstance(item, dict) and isinstance(item.get("msg"), str):
                loc = item.get("loc")
                where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
                parts.append(f"{where}: {item['msg']}" if where else item["msg"])
        return "; ".join(parts) or None
    return None


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def _count(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None
