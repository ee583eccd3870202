"""What the fake providers share: recorded requests, cuts, failures, faults, and the provider protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["FAULT_KINDS", "Failure", "FakeProvider", "Fault", "RecordedRequest", "Truncation", "ranked"]

FAULT_KINDS = frozenset({"rate_limit", "status", "shuffle", "delay"})


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # parsed JSON, or the raw bytes when the body is not JSON


@dataclass(frozen=True)
class Truncation:
    """One item the fake provider cut silently: ``what`` is ``"query"`` or ``"document N"``."""

    request: int  # the position of the request in `requests`
    what: str
    tokens: int
    kept: int


class Failure(Exception):
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


@dataclass
class Fault:
    kind: str
    times: int
    params: dict[str, Any] = field(default_factory=dict)


class FakeProvider(Protocol):
    """What a provider's request handler reads of the fake server (see ``FakeHostedServer``)."""

    models: tuple[str, ...]
    applies_instruction: bool
    usage_shape: str

    def limit(self, name: str) -> int | None: ...
    def vl_limit(self, name: str) -> int | None: ...
    def error(self, status: int, code: Any, message: str) -> Failure: ...
    def invalid(self, message: str, *, kind: str = ..., loc: list[str] | None = ...) -> Failure: ...
    def tokens(self, text: str) -> int: ...
    def cut(self, number: int, what: str, text: str, cap: int | None) -> str: ...
    def score(self, pairs: list[tuple[str, str]], instruction: str) -> list[float]: ...
    def check_strings(self, value: Any, name: str, *, non_empty: bool = ...) -> list[str]: ...


def ranked(scores: list[float], documents: list[Any], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Results sorted by score, highest first, cut to ``top_n``, with the document when asked for."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    top_n = params.get("top_n")
    if isinstance(top_n, int) and top_n > 0:
        order = order[:top_n]
    keep = params.get("return_documents") is True
    return [
        {
            "index": i,
            "relevance_score": scores[i],
            **({"document": _echo(documents[i])} if keep else {}),
        }
        for i in order
    ]


def _echo(document: Any) -> Any:
    return document if isinstance(document, dict) else {"text": document}
