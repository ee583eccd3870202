"""The remote backend's settings, checked once into small frozen objects.

- [`Limits`][qwen_rerank.remote._settings.Limits]: sizes and counts (documents per
  request, concurrency, response bytes, prompt length).
- [`Timing`][qwen_rerank.remote._settings.Timing]: the timeout of one attempt, the
  deadline of a call, and the retry policy.
- [`Endpoints`][qwen_rerank.remote._settings.Endpoints]: the base URLs as shown, the
  headers sent to each rerank URL, the secrets to hide, and the replicas.
- `check_*` helpers: a bad value is an [`InvalidInputError`][qwen_rerank.InvalidInputError]
  that names it and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from qwen_rerank._secrets import Redactor, check_api_key, split_userinfo
from qwen_rerank._validation import check_positive_int
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.media import MediaLimits
from qwen_rerank.remote._dialects import DIALECTS, Dialect
from qwen_rerank.remote._providers import MODELS, find_model
from qwen_rerank.remote._retry import RetryPolicy
from qwen_rerank.remote._urls import Replicas, rerank_url

__all__ = [
    "Endpoints",
    "Limits",
    "Timing",
    "check_chunking",
    "check_dialect",
    "check_fixed_instruction",
    "check_media",
    "check_model",
    "check_price",
    "check_template",
]


@dataclass(frozen=True)
class Limits:
    """How much one call may send and read, checked."""

    max_documents_per_request: int
    max_concurrency: int
    max_length: int
    max_tokens_per_doc: int | None
    max_response_bytes: int | None

    @classmethod
    def check(
        cls,
        dialect: Dialect,
        template: str,
        max_documents_per_request: Any,
        max_concurrency: Any,
        max_length: Any,
        max_tokens_per_doc: Any,
        max_response_bytes: Any,
    ) -> Limits:
        if max_tokens_per_doc is not None:
            check_positive_int("max_tokens_per_doc", max_tokens_per_doc)
            if not dialect.takes_max_tokens_per_doc:
                raise InvalidInputError(f"max_tokens_per_doc is a vLLM field; api={dialect.name!r} has none.")
            if template == "client":
                raise InvalidInputError(
                    "max_tokens_per_doc is applied by the server's template, so it needs template='server'. "
                    "With template='client', pass tokenizer= and max_length= to truncate on the client."
                )
        if max_response_bytes is not None:
            check_positive_int("max_response_bytes", max_response_bytes)
        if max_documents_per_request is None:
            max_documents_per_request = dialect.max_documents
        return cls(
            check_positive_int("max_documents_per_request", max_documents_per_request),
            check_positive_int("max_concurrency", max_concurrency),
            check_positive_int("max_length", max_length),
            max_tokens_per_doc,
            max_response_bytes,
        )


@dataclass(frozen=True)
class Timing:
    """How long an attempt and a call may take, and what is retried."""

    timeout: httpx.Timeout
    attempt: float | None  # seconds one attempt may take as a whole; None: unbounded
    deadline: float | None  # seconds a call may take (with auto: per round of sub-requests); None: unbounded
    policy: RetryPolicy
    auto: bool = False  # deadline="auto": the call gets `deadline` per round of max_concurrency sub-requests

    @classmethod
    def check(
        cls,
        timeout: Any,
        deadline: Any,
        max_retries: Any,
        retry_backoff: Any,
        max_retry_wait: Any,
        replicas: int,
    ) -> Timing:
        policy = RetryPolicy(
            max_retries=_check_count("max_retries", max_retries),
            backoff=_check_seconds("retry_backoff", retry_backoff),
            max_wait=_check_seconds("max_retry_wait", max_retry_wait),
        )
        phases = _make_timeout(timeout)
        attempt = _attempt_budget(phases)
        seconds = _make_deadline(deadline, attempt, policy, replicas)
        return cls(phases, attempt, seconds, policy, auto=deadline == "auto" and seconds is not None)


@dataclass(frozen=True, eq=False)
class Endpoints:
    """Where requests go and what they carry: URLs, the headers of each, and the secrets to hide."""

    base_urls: list[str]  # as shown: without any user:password
    headers: dict[str, dict[str, str]]  # by rerank URL
    redact: Redactor  # every secret: the API key and each URL's password
    replicas: Replicas
    keyed: bool  # whether an API key is sent

    @classmethod
    def check(cls, base_url: Any, api_key: Any, dialect: Dialect, model: str | None = None) -> Endpoints:
        """The endpoints of ``base_url`` (a URL or a list of replicas), checked.

        Each is sent ``api_key`` as a bearer token, unless its URL holds credentials.
        ``model`` goes into the path of a hosted API that names the model there.
        """
        urls = [base_url] if isinstance(base_url, str) else base_url
        if not isinstance(urls, Sequence) or not urls:
            raise InvalidInputError(
                f"base_url must be a URL or a non-empty list of URLs, got {type(base_url).__name__}."
            )
        api_key = check_api_key(api_key)
        shown, secrets = [], [api_key] if api_key else []
        headers: dict[str, dict[str, str]] = {}
        for url in urls:
            plain, basic, hidden = split_userinfo(url) if isinstance(url, str) else (url, None, [])
            shown.append(plain)
            secrets += hidden
            sent = {"Content-Type": "application/json", "Accept-Encoding": "gzip, deflate"}
            auth = basic or (f"Bearer {api_key}" if api_key else None)
            if auth:
                sent["Authorization"] = auth
            headers[rerank_url(plain, dialect, model)] = sent
        replicas = Replicas([rerank_url(plain, dialect, model) for plain in shown])
        return cls(shown, headers, Redactor(secrets), replicas, bool(api_key))


def check_chunking(long_documents: Any, tokenizer: Any) -> None:
    """Refuse chunk mode without a tokenizer: windows are cut on token boundaries."""
    if long_documents == "chunk" and tokenizer is None:
        raise InvalidInputError(
            "long_documents='chunk' needs tokenizer= (the model's hub id or local folder) to cut "
            "windows on token boundaries; pass it, or use long_documents='truncate'."
        )


def check_dialect(api: Any) -> Dialect:
    if api not in DIALECTS:
        raise InvalidInputError(f"api must be one of {sorted(DIALECTS)}, got {api!r}.")
    return DIALECTS[api]


def check_media(
    multimodal: Any, dialect: Dialect, model: str | None, template: Any, limits: MediaLimits | None
) -> MediaLimits | None:
    """How local images are read to be sent; ``None`` for a reranker that reads text only.

    A hosted multimodal model (one whose row has ``media``: DashScope's ``qwen3-vl-rerank``)
    reads images and video, ``multimodal`` or not. Elsewhere ``multimodal=True`` needs vLLM
    and its server template, which vLLM applies to the content parts it is sent.
    """
    row = None if dialect.hosted is None or model is None else find_model(dialect.name, model)
    if row is not None and row.media is not None:
        return limits or MediaLimits()
    if not multimodal:
        return None
    if dialect.hosted is not None:
        known = [m.model for m in MODELS.values() if m.provider == dialect.name and m.media is not None]
        fix = (
            f"pass model={known[0]!r}"
            if known
            else f"api={dialect.name!r} hosts none; use api='dashscope' with model='qwen3-vl-rerank'"
        )
        raise InvalidInputError(
            f"multimodal=True needs a multimodal model, and api={dialect.name!r}"
            f"{f' model={model!r}' if model else ''} reads text only: {fix} (the hosted Qwen3-VL "
            "reranker), or serve a Qwen3-VL-Reranker with vLLM (api='vllm')."
        )
    if dialect.name != "vllm" or template == "client":
        raise InvalidInputError(
            f"multimodal=True needs api='vllm' and template='server' (got api={dialect.name!r}, "
            f"template={template!r}): vLLM applies the Qwen3-VL-Reranker's chat template to the "
            "content parts it is sent."
        )
    return limits or MediaLimits()


def check_model(model: Any, dialect: Dialect) -> str | None:
    if model is not None and (not isinstance(model, str) or not model):
        raise InvalidInputError(f"model must be a non-empty str or None, got {model!r}.")
    if model is None and dialect.needs_model:
        raise InvalidInputError(
            f"api={dialect.name!r} needs model=, the name the server serves the reranker as."
        )
    return model


def check_price(price: Any) -> float | None:
    """A price per million tokens: a finite number >= 0, or None."""
    return None if price is None else _check_seconds("price_per_million_tokens", price, unit="")


def check_template(template: Any, dialect: Dialect) -> Literal["client", "server"]:
    """The template mode to use: ``template``, or the dialect's default when it is ``None``."""
    if template is None:
        return dialect.default_template
    if template not in ("client", "server"):
        raise InvalidInputError(f"template must be 'client', 'server' or None, got {template!r}.")
    if template == "server" and not dialect.server_template:
        raise InvalidInputError(
            f"api={dialect.name!r} serves the -seq-cls model, which applies no Qwen3 prompt, so "
            "template='server' would score the raw pair. Use template='client' (the default): the "
            "client wraps the prompt."
        )
    if template == "client" and dialect.applies_template:
        where = "the hosted API" if dialect.hosted else "servers"
        raise InvalidInputError(
            f"api={dialect.name!r} {where} wrap every pair in the model's rerank template "
            "themselves, so template='client' would wrap each prompt twice and score it wrongly. Use "
            "template='server' (the default for this api)."
        )
    return "client" if template == "client" else "server"


def check_fixed_instruction(dialect: Dialect, instruction: str) -> None:
    """Refuse an instruction that a server with a fixed one would silently replace."""
    fixed = dialect.fixed_instruction
    if fixed is None or instruction == fixed:
        return
    raise InvalidInputError(
        f"llama-server (api={dialect.name!r}) applies the fixed instruction of the GGUF's rerank "
        f"template ({fixed!r}) and ignores any other, so instruction={instruction!r} would be "
        "silently replaced. For a custom instruction, use LocalReranker, or serve the model with "
        "vLLM or SGLang (api='vllm' or 'sglang')."
    )


def _attempt_budget(timeout: httpx.Timeout) -> float | None:
    """Seconds one attempt may take as a whole: the sum of the phases (None if one is unbounded)."""
    phases = (timeout.connect, timeout.write, timeout.read, timeout.pool)
    if any(p is None for p in phases):
        return None
    if timeout.read is not None and timeout.read == timeout.write == timeout.pool:
        return timeout.read  # a plain number: it bounds the attempt as given
    return float(sum(p for p in phases if p is not None))


def _make_deadline(deadline: Any, budget: float | None, policy: RetryPolicy, replicas: int) -> float | None:
    if deadline == "auto":
        if budget is None:
            return None
        return (policy.max_retries + replicas) * budget + policy.max_retries * policy.max_wait
    if deadline is None:
        return None
    seconds = _check_seconds("deadline", deadline)
    if seconds <= 0:
        raise InvalidInputError(
            f"deadline must be a positive number of seconds, 'auto' or None, got {deadline!r}."
        )
    return seconds


def _make_timeout(timeout: Any) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    seconds = _check_seconds("timeout", timeout)
    if seconds <= 0:
        raise InvalidInputError(f"timeout must be a positive number of seconds, got {timeout!r}.")
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


def _check_seconds(name: str, value: Any, unit: str = " of seconds") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise InvalidInputError(f"{name} must be a finite number{unit} >= 0, got {value!r}.")
    return float(value)


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInputError(f"{name} must be an int >= 0, got {value!r}.")
    return value
