"""``qwen-rerank check``: does a server serve Qwen3-Reranker correctly?

Each check gives ``ok``, ``warn`` or ``FAIL`` with the fix:

- **reachable**: a 1- and a 20-document call succeed; their latencies.
- **server**: whether it is llama.cpp's ``llama-server`` (from its ``/props`` answer, or
  ``/health``'s), and whether ``--api llamacpp`` was given for it.
- **constant scores**: all scores equal, or all exactly 0.5 (a known server regression).
- **rank head**: scores near 0 or NaN for every pair, or a llama-server that wraps no
  template around a pair: a GGUF converted without its rerank head.
- **template**: whether the server wraps pairs in the Qwen3 prompt itself (``--chat-template``),
  from the prompt tokens it reports for a short pair (or, when it reports none, from the
  gap between a clearly relevant and a clearly irrelevant pair), and whether ``--template``
  matches: ``client`` against a wrapping server wraps the prompt twice, ``server`` against
  a plain one wraps it not at all.
- **instruction**: one pair scored under two instructions; identical scores mean the
  server ignores the instruction (llama-server, or a vLLM ``--chat-template`` that drops it).
- **context length**: whether a prompt of ``--max-length`` tokens is accepted, else the
  longest document that is.

Use it from Python with `run_checks`, or `qwen-rerank check --base-url URL`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx

from qwen_rerank._secrets import display_url
from qwen_rerank.exceptions import APIStatusError, MalformedResponseError, QwenRerankError
from qwen_rerank.prompt import DEFAULT_INSTRUCTION
from qwen_rerank.remote import API_KEY_ENV, VLLMReranker
from qwen_rerank.remote._dialects import DIALECTS, ApiName

__all__ = ["Finding", "add_check_command", "run_checks"]

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
_TEMPLATE_TOKENS = 40
_WORD = " panda"  # one token in the Qwen3 vocabulary
OTHER_INSTRUCTION = "Given a statement, retrieve passages that contradict it"
_RECONVERT = (
    "Reconvert the checkpoint with a current llama.cpp's convert_hf_to_gguf.py, from a folder whose "
    "name contains 'qwen3-reranker' (that is how it recognises the reranker and keeps its rank head), "
    "then restart llama-server with --reranking."
)


@dataclass
class Finding:
    """One check's outcome: ``status`` is ``"ok"``, ``"warn"`` or ``"FAIL"``; ``fix`` says what to do."""

    name: str
    status: Status
    message: str
    fix: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def run_checks(
    base_url: str,
    *,
    model: str | None = None,
    template: Literal["client", "server"] | None = None,
    api: ApiName = "vllm",
    max_length: int = 8192,
    timeout: float = 60.0,
) -> list[Finding]:
    """Run every check against ``base_url``; the API key comes from ``QWEN_RERANK_API_KEY``.

    ``template=None`` uses the dialect's default (``"server"`` for ``api="llamacpp"``).
    """
    dialect = DIALECTS[api] if api in DIALECTS else DIALECTS["vllm"]
    template = template or dialect.default_template

    def make(mode: Literal["client", "server"]) -> VLLMReranker:
        return VLLMReranker(
            base_url,
            model=model,
            template=mode,
            api=api,
            max_retries=0,
            timeout=timeout,
            max_length=max_length,
        )

    # A dialect whose server always wraps (llamacpp) has no client mode to compare with.
    other_mode: Literal["client", "server"] = "server" if template == "client" else "client"
    with contextlib.ExitStack() as stack:
        chosen = stack.enter_context(make(template))
        other = None if dialect.applies_template else stack.enter_context(make(other_mode))
        reachable = _reachable(chosen)
        if reachable.status == "FAIL":
            return [reachable]
        kind = _server_kind(base_url, api, timeout)
        llama = bool(kind.data.get("llama_server"))
        scores = reachable.data.pop("scores")
        if other is None:
            template_finding = _fixed_template(chosen)
        else:
            client, server = (chosen, other) if template == "client" else (other, chosen)
            template_finding = _template(client, server, template)
        return [
            reachable,
            kind,
            _constant(scores),
            _rank_head(scores, reachable.data["tokens_1"], llama=llama),
            template_finding,
            _instruction(chosen),
            _context(chosen, max_length, llama=llama),
        ]


def _timed(call: Callable[[], list[float]]) -> tuple[list[float], float]:
    started = time.perf_counter()
    scores = call()
    return scores, (time.perf_counter() - started) * 1000


def _reachable(reranker: VLLMReranker) -> Finding:
    query, relevant = RELEVANT
    documents = [f"{relevant} Note {i}: {'more ' * i}text." for i in range(20)]
    try:
        _, one_ms = _timed(lambda: reranker.score(query, documents[:1]))
        tokens_1 = reranker.last_usage.prompt_tokens if reranker.last_usage is not None else None
        scores, twenty_ms = _timed(lambda: reranker.score(query, documents))
    except MalformedResponseError as exc:
        fix = "The server answers, but not with probabilities. On llama-server: " + _RECONVERT
        return Finding("reachable", "FAIL", str(exc), fix)
    except QwenRerankError as exc:
        return Finding("reachable", "FAIL", str(exc), "Check --base-url, --api, --model and the API key.")
    message = f"1 document in {one_ms:.0f} ms, 20 documents in {twenty_ms:.0f} ms"
    data = {"ms_1": one_ms, "ms_20": twenty_ms, "tokens_1": tokens_1, "scores": scores}
    return Finding("reachable", "ok", message, data=data)


def _server_kind(base_url: str, api: str, timeout: float) -> Finding:
    """Whether the server is llama-server: its ``/props`` names a model file and its slots."""
    props = _get_json(base_url, "/props", timeout)
    llama = isinstance(props, dict) and "total_slots" in props and "default_generation_settings" in props
    if not llama:
        health = _get_json(base_url, "/health", timeout)
        llama = isinstance(health, dict) and health.get("status") == "ok" and props is not None
    data: dict[str, Any] = {"llama_server": llama}
    if not llama:
        return Finding("server", "ok", "not llama-server (no llama.cpp /props)", data=data)
    if isinstance(props, dict):
        settings = props.get("default_generation_settings")
        data["n_ctx"] = settings.get("n_ctx") if isinstance(settings, dict) else None
        data["total_slots"] = props.get("total_slots")
    if api == "llamacpp":
        return Finding("server", "ok", "llama.cpp llama-server, spoken to with --api llamacpp", data=data)
    return Finding(
        "server",
        "warn",
        f"this is llama.cpp's llama-server, but --api {api} was given",
        "Use --api llamacpp (VLLMReranker(api='llamacpp')): it sends raw pairs for the GGUF's own "
        "template and refuses instructions that llama-server would ignore.",
        data,
    )


def _get_json(base_url: str, path: str, timeout: float) -> Any:
    """The JSON of ``GET path`` at the server's root, or None when there is none."""
    url = httpx.URL(base_url).copy_with(path=path, query=None, fragment=None)
    key = os.environ.get(API_KEY_ENV)
    headers = {"Authorization": f"Bearer {key}"} if key and not url.userinfo else {}
    try:
        response = httpx.get(url, headers=headers, timeout=min(timeout, 10.0))
        return response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


def _constant(scores: list[float]) -> Finding:
    if all(s == 0.5 for s in scores) or len(set(scores)) == 1:
        return Finding(
            "constant scores",
            "FAIL",
            f"all {len(scores)} scores are {scores[0]!r}: the server does not score with the reranker head",
            'Serve with --hf_overrides \'{"architectures": ["Qwen3ForSequenceClassification"], '
            '"classifier_from_token": ["no", "yes"], "is_original_qwen3_reranker": true}\', and use a vLLM '
            "release without the constant-score regression.",
            {"scores": scores},
        )
    return Finding("constant scores", "ok", f"{len(set(scores))} distinct scores of {len(scores)}")


def _rank_head(scores: list[float], tokens_1: int | None, *, llama: bool) -> Finding:
    """A GGUF without its rank head: every score near 0 or NaN, or llama-server adds no template."""
    if all(math.isnan(s) or abs(s) < 1e-3 for s in scores):
        return Finding(
            "rank head",
            "FAIL",
            f"all {len(scores)} scores are near 0 or NaN: the model has no rerank head",
            _RECONVERT,
            {"scores": scores},
        )
    if llama and tokens_1 is not None and tokens_1 < _TEMPLATE_TOKENS:
        return Finding(
            "rank head",
            "FAIL",
            f"llama-server reports {tokens_1} prompt tokens for one short pair: its GGUF has no rerank "
            "template, so it was converted without the reranker's rank head",
            _RECONVERT,
            {"tokens_1": tokens_1},
        )
    return Finding("rank head", "ok", "scores spread over pairs")


def _fixed_template(server: VLLMReranker) -> Finding:
    """A dialect whose server always wraps: confirm it does, from the tokens of two short pairs."""
    try:
        server.score(RELEVANT[0], [RELEVANT[1], IRRELEVANT[1]])
    except QwenRerankError as exc:
        return Finding("template", "warn", f"template='server' failed: {exc}")
    tokens = server.last_usage.prompt_tokens if server.last_usage is not None else None
    data: dict[str, Any] = {"server_tokens": tokens, "expected": "server"}
    if tokens is not None and tokens / 2 < _TEMPLATE_TOKENS:
        return Finding(
            "template",
            "warn",
            f"the server reports {tokens} prompt tokens for two short raw pairs: it wraps them in no "
            f"template, so api={server.api!r} sends prompts not wrapped at all",
            "Use the api of the server you run (e.g. --api vllm --template client).",
            data,
        )
    return Finding("template", "ok", f"the server applies its template ({tokens} prompt tokens)", data=data)


def _instruction(reranker: VLLMReranker) -> Finding:
    """One pair under two instructions: identical scores mean the server drops the instruction."""
    fixed = DIALECTS[reranker.api].fixed_instruction
    if fixed is not None:
        return Finding(
            "instruction",
            "ok",
            "llama-server applies the GGUF's fixed instruction; the client refuses any other",
        )
    query, document = RELEVANT
    try:
        first = reranker.score(query, [document], instruction=DEFAULT_INSTRUCTION)[0]
        second = reranker.score(query, [document], instruction=OTHER_INSTRUCTION)[0]
    except QwenRerankError as exc:
        return Finding("instruction", "warn", f"could not score under two instructions: {exc}")
    data = {"default": first, "other": second}
    if first == second:
        return Finding(
            "instruction",
            "warn",
            f"the same score ({first!r}) under two instructions: the server ignores the instruction, so "
            "a custom one is silently replaced by the server's",
            "On llama-server use --api llamacpp, which refuses custom instructions; for a custom one, "
            "use template='client' on a server without --chat-template, vLLM or SGLang with "
            "template='server', or LocalReranker.",
            data,
        )
    return Finding("instruction", "ok", "the instruction changes the score", data=data)


def _template(client: VLLMReranker, server: VLLMReranker, chosen: str) -> Finding:
    """Which mode the server expects: from reported prompt tokens, else from the relevance gap."""
    gaps: dict[str, float] = {}
    tokens: int | None = None
    for mode, reranker in (("client", client), ("server", server)):
        try:
            relevant, irrelevant = reranker.score(RELEVANT[0], [RELEVANT[1], IRRELEVANT[1]])
        except QwenRerankError as exc:
            return Finding("template", "warn", f"template={mode!r} failed: {exc}")
        gaps[mode] = relevant - irrelevant
        if mode == "server" and reranker.last_usage is not None:
            tokens = reranker.last_usage.prompt_tokens
    data: dict[str, Any] = {
        "gap_client": gaps["client"],
        "gap_server": gaps["server"],
        "server_tokens": tokens,
    }
    if tokens is not None:
        wraps = tokens / 2 >= _TEMPLATE_TOKENS  # two short pairs, sent raw
        how = f"it reports {tokens} prompt tokens for two short raw pairs"
    else:
        wraps = gaps["server"] > gaps["client"]
        how = f"relevance gap {gaps['server']:.3f} with its template, {gaps['client']:.3f} with the client's"
    expected = "server" if wraps else "client"
    data["expected"] = expected
    if expected == chosen:
        applies = "applies" if wraps else "does not apply"
        return Finding(
            "template",
            "ok",
            f"the server {applies} the template ({how}); --template {chosen} fits",
            data=data,
        )
    if chosen == "client":
        problem = "the server applies the template itself, so template='client' wraps every prompt twice"
    else:
        problem = (
            "the server does not apply the template, so template='server' sends prompts not wrapped at all"
        )
    return Finding("template", "warn", f"{problem} ({how})", f"Use template={expected!r}.", data)


def _context(reranker: VLLMReranker, max_length: int, *, llama: bool = False) -> Finding:
    """Whether a document filling ``max_length`` tokens is accepted; else the longest that is."""
    query = RELEVANT[0]

    def accepted(words: int) -> bool:
        try:
            reranker.score(query, [_WORD * words])
        except APIStatusError as exc:
            if exc.status_code in (400, 413, 422):
                return False
            raise
        return True

    full = max(1, max_length - 100)  # room for the prompt around the document
    try:
        if accepted(full):
            return Finding(
                "context length", "ok", f"a document of about {full} tokens is accepted", data={"words": full}
            )
        low, high = 0, full
        while high - low > max(8, high // 50):
            middle = (low + high) // 2
            low, high = (middle, high) if accepted(middle) else (low, middle)
    except QwenRerankError as exc:
        return Finding("context length", "warn", f"could not probe the context length: {exc}")
    return Finding(
        "context length",
        "FAIL",
        f"the longest document accepted is about {low} tokens, short of max_length={max_length}",
        f"{_serve_longer(max_length, llama)}, or pass max_length={low} and tokenizer= to the "
        "client so documents are cut to fit.",
        {"words": low},
    )


def _serve_longer(max_length: int, llama: bool) -> str:
    if llama:
        return f"Start llama-server with -c {max_length} or more (and -ub {max_length} for speed)"
    return f"Serve with --max-model-len {max_length} or more"


# -- command line --------------------------------------------------------------------------------
def add_check_command(commands: Any) -> None:
    """Add ``check`` to the ``qwen-rerank`` subcommands (an argparse subparsers object)."""
    check = commands.add_parser(
        "check",
        help="check that a server serves Qwen3-Reranker correctly",
        description="Check that a rerank server serves Qwen3-Reranker correctly; exit status 1 on any FAIL.",
    )
    check.add_argument("--base-url", required=True, help="the server, e.g. http://localhost:8000")
    check.add_argument("--model", help="model name to ask for (default: the server's; required for cohere)")
    check.add_argument(
        "--template", choices=["client", "server"], help="default: client (server for --api llamacpp)"
    )
    check.add_argument("--api", choices=sorted(DIALECTS), default="vllm", help="default vllm")
    check.add_argument("--max-length", type=int, default=8192, help="prompt tokens to expect (default 8192)")
    check.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    check.add_argument("--json", action="store_true", help="print one JSON report")
    # The shared option checks of cli.main read these; check has no local-model options.
    check.set_defaults(handler=run_check_command, device=None, dtype=None, compile=None, tokenizer=None)


def run_check_command(args: argparse.Namespace) -> int:
    findings = run_checks(
        args.base_url,
        model=args.model,
        template=args.template,
        api=args.api,
        max_length=args.max_length,
        timeout=args.timeout,
    )
    failed = any(f.status == "FAIL" for f in findings)
    if args.json:
        report = {
            "base_url": display_url(args.base_url),
            "api": args.api,
            "template": args.template or DIALECTS[args.api].default_template,
            "ok": not failed,
            "checks": [asdict(f) for f in findings],
        }
        print(json.dumps(report, ensure_ascii=False))
    else:
        for f in findings:
            print(f"{f.status:<5} {f.name:<16} {f.message}" + (f"\n      fix: {f.fix}" if f.fix else ""))
    return 1 if failed else 0
