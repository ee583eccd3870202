"""What `qwen-rerank check`'s findings are made of: the `Finding` each returns, the `Probe` each
reads, and the pairs and instruction they send."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from qwen_rerank.remote import RemoteReranker
from qwen_rerank.tools._servers import Server

__all__ = [
    "ABSURD_TOKENS",
    "IRRELEVANT",
    "OTHER_INSTRUCTION",
    "RELEVANT",
    "TEMPLATE_TOKENS",
    "WORD",
    "Finding",
    "Probe",
    "Status",
]

Status = Literal["ok", "warn", "FAIL"]

RELEVANT = (
    "What is the capital of China?",
    "The capital of China is Beijing, the political and cultural centre of the country.",
)
IRRELEVANT = (
    "What is the capital of China?",
    "Gravity is a force that attracts two bodies towards each other.",
)
# The Qwen3 reranker prompt adds about 70 tokens around a pair; a server that reports fewer
# for a short pair sent raw did not wrap it.
TEMPLATE_TOKENS = 40
WORD = " panda"  # one token in the Qwen3 vocabulary
ABSURD_TOKENS = 10**9
"""A usage count this large is not believed: no call of the check sends a billion tokens."""
OTHER_INSTRUCTION = "Given a statement, retrieve passages that contradict it"


@dataclass
class Finding:
    """One check's outcome: `status` is `"ok"`, `"warn"` or `"FAIL"`; `fix` says what to do."""

    name: str
    status: Status
    message: str
    fix: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Probe:
    """What the checks after **reachable** work with: the server, reached two ways, and its first answers.

    `chosen` uses the `template` the user chose, `client` and `server` the two
    templates (one of them is `chosen`; the other is `None` where the dialect
    refuses it). `scores` are the 20-document call's, `prompt_tokens` what the
    server reported for it (`None`: nothing). A check that asks the server
    something else uses `base_url`, `api` and `timeout`. `kind` is which server
    answers; on llama-server, `raw_tokens_1` is the prompt tokens it reports for one
    short raw pair (sent as `--api llamacpp` does), which tell whether its GGUF has
    the rerank template.
    """

    base_url: str | None
    api: str
    timeout: float
    chosen: RemoteReranker
    client: RemoteReranker | None
    server: RemoteReranker | None
    template: Literal["client", "server"]
    max_length: int
    scores: list[float]
    prompt_tokens: int | None
    tokens_1: int | None = None
    llama: bool = False
    kind: Server | None = None
    raw_tokens_1: int | None = None
