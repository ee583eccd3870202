"""``qwen-rerank check``: does a server serve Qwen3-Reranker correctly?

Each check gives ``ok``, ``warn`` or ``FAIL`` with the fix:

- **reachable**: a 1- and a 20-document call succeed; their latencies.
- **constant scores**: all scores equal, or all exactly 0.5 (a known server regression).
- **template**: whether the server wraps pairs in the Qwen3 prompt itself (``--chat-template``),
  from the prompt tokens it reports for a short pair (or, when it reports none, from the
  gap between a clearly relevant and a clearly irrelevant pair), and whether ``--template``
  matches: ``client`` against a wrapping server wraps the prompt twice, ``server`` against
  a plain one wraps it not at all. TEI and Infinity (``--api tei``, ``--api infinity``)
  never apply the Qwen3 prompt, so for them the client's wrapping is the only mode.
- **context length**: whether a prompt of ``--max-length`` tokens is accepted, else the
  longest document that is.

Use it from Python with :func:`run_checks`, or ``qwen-rerank check --base-url URL``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from qwen_rerank._secrets import display_url
from qwen_rerank.exceptions import APIStatusError, InvalidInputError, QwenRerankError
from qwen_rerank.remote import VLLMReranker

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
    template: Literal["client", "server"] = "client",
    api: Literal["vllm", "sglang", "cohere", "tei", "infinity"] = "vllm",
    max_length: int = 8192,
    timeout: float = 60.0,
) -> list[Finding]:
    """Run every check against ``base_url``; the API key comes from ``QWEN_RERANK_API_KEY``."""

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

    with make(template) as chosen:
        reachable = _reachable(chosen)
        if reachable.status == "FAIL":
            return [reachable]
        try:
            other = make("server" if template == "client" else "client")
        except InvalidInputError:  # tei, infinity: the server never applies the Qwen3 prompt
            template_finding = Finding(
                "template", "ok", f"api={api!r} applies no Qwen3 prompt; the client wraps each pair"
            )
        else:
            with other:
                client, server = (chosen, other) if template == "client" else (other, chosen)
                template_finding = _template(client, server, template)
        return [
            reachable,
            _constant(reachable.data.pop("scores"), api),
            template_finding,
            _context(chosen, max_length),
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
        scores, twenty_ms = _timed(lambda: reranker.score(query, documents))
    except QwenRerankError as exc:
        return Finding("reachable", "FAIL", str(exc), "Check --base-url, --api, --model and the API key.")
    message = f"1 document in {one_ms:.0f} ms, 20 documents in {twenty_ms:.0f} ms"
    return Finding("reachable", "ok", message, data={"ms_1": one_ms, "ms_20": twenty_ms, "scores": scores})


def _constant(scores: list[float], api: str) -> Finding:
    if all(s == 0.5 for s in scores) or len(set(scores)) == 1:
        fix = (
            'Serve with --hf_overrides \'{"architectures": ["Qwen3ForSequenceClassification"], '
            '"classifier_from_token": ["no", "yes"], "is_original_qwen3_reranker": true}\', and use a vLLM '
            "release without the constant-score regression."
        )
        if api in ("tei", "infinity"):
            fix = (
                "Serve the -seq-cls conversion, whose classifier row is the LM head's yes row minus its no "
                "row: qwen_rerank.testing.convert_to_seq_cls(checkpoint, folder) writes one."
            )
        return Finding(
            "constant scores",
            "FAIL",
            f"all {len(scores)} scores are {scores[0]!r}: the server does not score with the reranker head",
            fix,
            {"scores": scores},
        )
    return Finding("constant scores", "ok", f"{len(set(scores))} distinct scores of {len(scores)}")


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


def _context(reranker: VLLMReranker, max_length: int) -> Finding:
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
        f"Serve with --max-model-len {max_length} or more, or pass max_length={low} and tokenizer= to the "
        "client so documents are cut to fit.",
        {"words": low},
    )


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
    check.add_argument("--template", choices=["client", "server"], default="client", help="default client")
    check.add_argument(
        "--api", choices=["vllm", "sglang", "cohere", "tei", "infinity"], default="vllm", help="default vllm"
    )
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
            "template": args.template,
            "ok": not failed,
            "checks": [asdict(f) for f in findings],
        }
        print(json.dumps(report, ensure_ascii=False))
    else:
        for f in findings:
            print(f"{f.status:<5} {f.name:<16} {f.message}" + (f"\n      fix: {f.fix}" if f.fix else ""))
    return 1 if failed else 0
