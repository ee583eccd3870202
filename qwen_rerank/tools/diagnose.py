"""Diagnosis of a rerank server: does it serve Qwen3-Reranker correctly? (`qwen-rerank check`)

First it asks which server answers (llama.cpp's `llama-server`, vLLM, SGLang, TEI, Infinity,
or a web page such as a login page in front of it; see `qwen_rerank.tools._servers`), with
GETs read under a rerank reply's caps and time limit. Each check then gives `ok`, `warn` or
`FAIL`, with a fix that follows from what was found:

- **reachable**: a 1- and a 20-document call succeed; their latencies.
- **server**: which server it is, and whether `--api` speaks its wire format.
- **constant scores**: all scores equal, or all exactly 0.5 (a known server regression).
- **rank head**: scores near 0 or NaN for every pair, or a llama-server that wraps no
  template around a raw pair (asked with `--api llamacpp`, whatever `--api` was given):
  a GGUF converted without its rerank head.
- **usage**: the prompt tokens the server reports for the 20 documents, and whether
  that count is believable (a count of a billion tokens or more is reported as absurd).
- **template**: whether the server wraps pairs in the Qwen3 prompt itself (`--chat-template`),
  from the prompt tokens it reports for a short pair (or, when it reports none or an absurd
  count, from the gap between a clearly relevant and a clearly irrelevant pair), and whether
  `--template` matches: `client` against a wrapping server wraps the prompt twice, `server`
  against a plain one wraps it not at all. TEI and Infinity (`--api tei`, `--api infinity`)
  never apply the Qwen3 prompt, so for them the client's wrapping is the only mode.
- **instruction**: one pair scored under two instructions; identical scores mean the
  server ignores the instruction (llama-server, or a vLLM `--chat-template` that drops it).
- **server template**: on vLLM, the prompt its `--chat-template` renders for a pair (read
  back through `/tokenize` and `/detokenize`), compared with the model card's: vLLM's own
  `qwen3_reranker.jinja` loses the final newline, and the fix names our template.
- **context length**: whether a prompt of `--max-length` tokens is accepted, else the
  longest document that is (on llama-server, the fix counts its slots, which share `-c`).
  Against a hosted API (`--api dashscope`, `siliconflow`,
  `deepinfra`), **limits** instead: the provider's limits its requests are split to.

Against a hosted API, **reachable** confirms the key, **server** and **template** say that
the provider applies the Qwen3 template itself, and no other request is sent (no key
goes to any other path).

The checks after **reachable** are the functions in [`FINDINGS`][qwen_rerank.tools.diagnose.FINDINGS],
each taking the [`Probe`][qwen_rerank.tools.diagnose.Probe] and returning one
[`Finding`][qwen_rerank.tools.diagnose.Finding]: a new check is one more function there.

Use it from Python with [`run_checks`][qwen_rerank.tools.diagnose.run_checks], or
`qwen-rerank check --base-url URL` (`--tiny` checks the fake server on the tiny model), which
prints the same findings.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

from qwen_rerank.exceptions import (
    APIStatusError,
    InvalidInputError,
    MalformedResponseError,
    QwenRerankError,
    QwenRerankWarning,
)
from qwen_rerank.prompt import DEFAULT_INSTRUCTION
from qwen_rerank.remote import DIALECTS, ApiName, RemoteReranker
from qwen_rerank.tools._findings import (
    ABSURD_TOKENS,
    IRRELEVANT,
    OTHER_INSTRUCTION,
    RELEVANT,
    TEMPLATE_TOKENS,
    WORD,
    Finding,
    Probe,
)
from qwen_rerank.tools._fixes import CONSTANT_FIXES, RECONVERT, serve_longer, unreachable_fix
from qwen_rerank.tools._server_template import server_template_finding
from qwen_rerank.tools._servers import LLAMA, PAGE, Server, recognise

__all__ = ["FINDINGS", "Finding", "Probe", "Server", "run_checks"]


def run_checks(
    base_url: str | None,
    *,
    model: str | None = None,
    template: Literal["client", "server"] | None = None,
    api: ApiName = "vllm",
    max_length: int | None = None,
    timeout: float = 60.0,
    tokenizer: str | None = None,
) -> list[Finding]:
    """Run every check against `base_url`; the API key comes from `QWEN_RERANK_API_KEY`.

    Against a hosted API the key comes from the provider's variable (`DASHSCOPE_API_KEY`...).

    Args:
        base_url: The server, e.g. `http://localhost:8000`; `None` for a hosted API's endpoint.
        model: The model name to ask for (default: the server's; required for `api="cohere"`).
        template: How the client will talk to it: `"client"` or `"server"`; `None` takes
            the dialect's default (`"server"` for `api="llamacpp"`, else `"client"`).
        api: The server's wire format.
        max_length: The prompt length, in tokens, the server should accept (default 8192; a
            hosted API: its limit).
        timeout: Seconds per request.
        tokenizer: A tokenizer (hub id or folder) that cuts documents to `max_length`.

    Returns:
        One [`Finding`][qwen_rerank.tools.diagnose.Finding] per check; only **reachable** if it failed.
    """
    make = functools.partial(
        RemoteReranker, base_url, model=model, api=api, max_retries=0, timeout=timeout, max_length=max_length
    )
    template = template or (DIALECTS[api].default_template if api in DIALECTS else "client")
    other: Literal["client", "server"] = "server" if template == "client" else "client"
    with _quiet_backend_warnings(), make(template=template, tokenizer=tokenizer) as chosen:
        hosted = DIALECTS[api].hosted is not None
        # A hosted API is sent rerank requests only: its key goes to no other path.
        server = Server(None, "a hosted API") if hosted else recognise(chosen)
        reachable = _reachable(chosen, server)
        if reachable.status == "FAIL":
            return [reachable]
        with contextlib.ExitStack() as stack:
            second = _other_mode(make, other)
            if second is not None:
                stack.enter_context(second)
            client, server_mode = (chosen, second) if template == "client" else (second, chosen)
            tokens_1 = reachable.data["tokens_1"]
            probe = Probe(
                base_url=base_url,
                api=api,
                timeout=timeout,
                chosen=chosen,
                client=client,
                server=server_mode,
                template=template,
                max_length=chosen.max_length,
                scores=reachable.data.pop("scores"),
                prompt_tokens=reachable.data.pop("prompt_tokens"),
                tokens_1=tokens_1,
                llama=server.name == LLAMA,
                kind=server,
                raw_tokens_1=_raw_tokens(make, api, tokens_1) if server.name == LLAMA else None,
            )
            kind = _hosted_kind(chosen) if hosted else _server_finding(server, api)
            return [reachable, kind, *(finding(probe) for finding in FINDINGS)]


def _other_mode(
    make: Callable[..., RemoteReranker], mode: Literal["client", "server"]
) -> RemoteReranker | None:
    """A client in the other template mode, or `None` where the dialect has only one."""
    try:
        return make(template=mode)
    except InvalidInputError:  # tei, infinity never apply the Qwen3 prompt; llamacpp always does
        return None


def _timed(call: Callable[[], list[float]]) -> tuple[list[float], float]:
    started = time.perf_counter()
    scores = call()
    return scores, (time.perf_counter() - started) * 1000


def _hosted_kind(reranker: RemoteReranker) -> Finding:
    message = f"a hosted API (api={reranker.api!r}), which applies the Qwen3 template itself"
    return Finding("server", "ok", message, data={"hosted": True, "llama_server": False})


def _reachable(reranker: RemoteReranker, server: Server) -> Finding:
    query, relevant = RELEVANT
    documents = [f"{relevant} Note {i}: {'more ' * i}text." for i in range(20)]
    try:
        _, one_ms = _timed(lambda: reranker.score(query, documents[:1]))
        tokens_1 = reranker.last_usage.prompt_tokens if reranker.last_usage is not None else None
        scores, twenty_ms = _timed(lambda: reranker.score(query, documents))
    except QwenRerankError as exc:
        malformed = isinstance(exc, MalformedResponseError)
        return Finding(
            "reachable", "FAIL", str(exc), unreachable_fix(server, reranker.api, malformed, str(exc))
        )
    usage = reranker.last_usage
    message = f"1 document in {one_ms:.0f} ms, 20 documents in {twenty_ms:.0f} ms"
    data = {
        "ms_1": one_ms,
        "ms_20": twenty_ms,
        "scores": scores,
        "tokens_1": tokens_1,
        "prompt_tokens": None if usage is None else usage.prompt_tokens,
    }
    return Finding("reachable", "ok", message, data=data)


def _constant(probe: Probe) -> Finding:
    scores = probe.scores
    if all(s == 0.5 for s in scores) or len(set(scores)) == 1:
        return Finding(
            "constant scores",
            "FAIL",
            f"all {len(scores)} scores are {scores[0]!r}: the server does not score with the reranker head",
            CONSTANT_FIXES.get(probe.api, CONSTANT_FIXES["vllm"]),
            {"scores": scores},
        )
    return Finding("constant scores", "ok", f"{len(set(scores))} distinct scores of {len(scores)}")


def _absurd(count: int) -> str:
    """How an absurd token count is shown: its digits, not the number, which may be hundreds long."""
    digits = int(count.bit_length() * 0.30103) + 1
    return f"an absurd count (a number of about {digits} digits)"


def _usage(probe: Probe) -> Finding:
    """Whether the server reports the prompt tokens of a call, and believably."""
    tokens = probe.prompt_tokens
    if tokens is None:
        return Finding("usage", "ok", "the server reports no token counts", data={"prompt_tokens": None})
    if tokens >= ABSURD_TOKENS:
        return Finding(
            "usage",
            "warn",
            f"the server reports {_absurd(tokens)} of prompt tokens for 20 short documents",
            "Do not bill or budget on this server's usage counts; report it to its maintainers.",
            {"prompt_tokens": None, "absurd": True},
        )
    return Finding("usage", "ok", f"{tokens} prompt tokens for 20 documents", data={"prompt_tokens": tokens})


def _template(probe: Probe) -> Finding:
    """Which mode the server expects: from reported prompt tokens, else from the relevance gap."""
    if DIALECTS[probe.api].hosted is not None:
        return Finding("template", "ok", f"api={probe.api!r} wraps each pair in the Qwen3 template itself")
    if _headless(probe):
        message = (
            "not judged: llama-server's GGUF has no rerank template (see rank head), so no --template "
            "gives Qwen3-Reranker's scores until it is reconverted"
        )
        return Finding("template", "warn", message)
    if probe.client is None and probe.server is not None:
        return _fixed_template(probe.server)
    if probe.client is None or probe.server is None:
        message = f"api={probe.api!r} applies no Qwen3 prompt; the client wraps each pair"
        return Finding("template", "ok", message)
    gaps: dict[str, float] = {}
    tokens: int | None = None
    for mode, reranker in (("client", probe.client), ("server", probe.server)):
        try:
            relevant, irrelevant = reranker.score(RELEVANT[0], [RELEVANT[1], IRRELEVANT[1]])
        except QwenRerankError as exc:
            return Finding("template", "warn", f"template={mode!r} failed: {exc}")
        gaps[mode] = relevant - irrelevant
        if mode == "server" and reranker.last_usage is not None:
            tokens = reranker.last_usage.prompt_tokens
    if tokens is not None and tokens >= ABSURD_TOKENS:
        tokens = None  # not believed: judge from the gap instead
    data: dict[str, Any] = {
        "gap_client": gaps["client"],
        "gap_server": gaps["server"],
        "server_tokens": tokens,
    }
    if tokens is not None:
        wraps = tokens >= 2 * TEMPLATE_TOKENS  # two short pairs, sent raw
        how = f"it reports {tokens} prompt tokens for two short raw pairs"
    else:
        wraps = gaps["server"] > gaps["client"]
        how = f"relevance gap {gaps['server']:.3f} with its template, {gaps['client']:.3f} with the client's"
    expected = "server" if wraps else "client"
    data["expected"] = expected
    if expected == probe.template:
        applies = "applies" if wraps else "does not apply"
        message = f"the server {applies} the template ({how}); --template {probe.template} fits"
        return Finding("template", "ok", message, data=data)
    if probe.template == "client":
        problem = "the server applies the template itself, so template='client' wraps every prompt twice"
    else:
        problem = (
            "the server does not apply the template, so template='server' sends prompts not wrapped at all"
        )
    return Finding("template", "warn", f"{problem} ({how})", f"Use template={expected!r}.", data)


def _context(probe: Probe) -> Finding:
    """Whether a document filling `max_length` tokens is accepted; else the longest that is.

    Against a hosted API, the limits its requests are split to: probing them would be billed.
    """
    limits = probe.chosen.request_limits
    if limits is not None:
        shown = {name: value for name, value in vars(limits).items() if name != "provider" and value}
        said = ", ".join(f"{name}={value:,}" for name, value in shown.items()) or "none known"
        return Finding(
            "limits", "ok", f"requests are split to api={probe.api!r}'s limits: {said}", data=shown
        )
    query, max_length = RELEVANT[0], probe.max_length

    def accepted(words: int) -> bool:
        try:
            probe.chosen.score(query, [WORD * words])
        except APIStatusError as exc:
            if exc.status_code in (400, 413, 422):
                return False
            raise
        return True

    full = max(1, max_length - 100)  # room for the prompt around the document
    try:
        if accepted(full):
            message = f"a document of about {full} tokens is accepted"
            return Finding("context length", "ok", message, data={"words": full})
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
        f"{serve_longer(max_length, probe.kind if probe.llama else None)}, or pass max_length={low} "
        "and tokenizer= to the client so documents are cut to fit.",
        {"words": low},
    )


def _server_finding(server: Server, api: str) -> Finding:
    """Which server answers, and whether ``--api`` speaks its wire format."""
    data: dict[str, Any] = {
        "name": server.name,
        "llama_server": server.name == LLAMA,
        "n_ctx": server.slot_tokens,
        "total_slots": server.slots,
    }
    if server.name is None or server.name == PAGE:
        return Finding("server", "ok", f"not recognised ({server.evidence})", data=data)
    if server.speaks(api):
        return Finding(
            "server", "ok", f"{server.label} ({server.evidence}), spoken to with --api {api}", data=data
        )
    if server.name == LLAMA:
        fix = (
            "Use --api llamacpp (RemoteReranker(api='llamacpp')): it sends raw pairs for the GGUF's own "
            "template and refuses instructions that llama-server would ignore."
        )
    else:
        fix = f"Use --api {server.own_api} (RemoteReranker(api={server.own_api!r}))."
    message = f"this is {server.label} ({server.evidence}), but --api {api} was given"
    return Finding("server", "warn", message, fix, data)


def _raw_tokens(make: Callable[..., RemoteReranker], api: str, tokens_1: int | None) -> int | None:
    """The prompt tokens llama-server reports for one short raw pair: it adds its GGUF's template, if any."""
    if api == "llamacpp":
        return tokens_1  # the 1-document call sent the raw pair already
    query, document = RELEVANT
    try:
        with make(api="llamacpp", template="server", model=None) as raw:
            raw.score(query, [document])
            return raw.last_usage.prompt_tokens if raw.last_usage is not None else None
    except QwenRerankError:
        return None


def _rank_head(probe: Probe) -> Finding:
    """A GGUF without its rank head: every score near 0 or NaN, or llama-server adds no template."""
    scores, tokens_1 = probe.scores, probe.raw_tokens_1
    if all(math.isnan(s) or abs(s) < 1e-3 for s in scores):
        return Finding(
            "rank head",
            "FAIL",
            f"all {len(scores)} scores are near 0 or NaN: the model has no rerank head",
            RECONVERT,
            {"scores": scores},
        )
    if _headless(probe):
        return Finding(
            "rank head",
            "FAIL",
            f"llama-server reports {tokens_1} prompt tokens for one short raw pair: its GGUF has no rerank "
            "template, so it was converted without the reranker's rank head",
            RECONVERT,
            {"tokens_1": tokens_1},
        )
    return Finding("rank head", "ok", "scores spread over pairs")


def _headless(probe: Probe) -> bool:
    """Whether llama-server wraps a raw pair in no template: its GGUF lacks the rerank template and head."""
    return probe.llama and probe.raw_tokens_1 is not None and probe.raw_tokens_1 < TEMPLATE_TOKENS


def _fixed_template(server: RemoteReranker) -> Finding:
    """A dialect whose server always wraps: confirm it does, from the tokens of two short pairs."""
    try:
        server.score(RELEVANT[0], [RELEVANT[1], IRRELEVANT[1]])
    except QwenRerankError as exc:
        return Finding("template", "warn", f"template='server' failed: {exc}")
    tokens = server.last_usage.prompt_tokens if server.last_usage is not None else None
    if tokens is not None and tokens >= ABSURD_TOKENS:
        tokens = None
    data: dict[str, Any] = {"server_tokens": tokens, "expected": "server"}
    if tokens is not None and tokens / 2 < TEMPLATE_TOKENS:
        return Finding(
            "template",
            "warn",
            f"the server reports {tokens} prompt tokens for two short raw pairs: it wraps them in no "
            f"template, so api={server.api!r} sends prompts not wrapped at all",
            "Use the api of the server you run (e.g. --api vllm --template client).",
            data,
        )
    return Finding("template", "ok", f"the server applies its template ({tokens} prompt tokens)", data=data)


def _instruction(probe: Probe) -> Finding:
    """One pair under two instructions: identical scores mean the server drops the instruction."""
    if DIALECTS[probe.api].fixed_instruction is not None:
        message = "llama-server applies the GGUF's fixed instruction; the client refuses any other"
        return Finding("instruction", "ok", message)
    if probe.template == "server" and DIALECTS[probe.api].instruction_field is None:
        message = (
            f"api={probe.api!r} has no instruction field: with --template server the server's template "
            "applies its default instruction, and the client refuses any other; not judged"
        )
        fix = f"For a custom instruction, use --template client with api={probe.api!r}: the client wraps it."
        return Finding("instruction", "ok", message, fix)
    query, document = RELEVANT
    try:
        first = probe.chosen.score(query, [document], instruction=DEFAULT_INSTRUCTION)[0]
        second = probe.chosen.score(query, [document], instruction=OTHER_INSTRUCTION)[0]
    except QwenRerankError as exc:
        return Finding("instruction", "warn", f"could not score under two instructions: {exc}")
    data = {"default": first, "other": second}
    if first == second and DIALECTS[probe.api].hosted is not None:
        return Finding(
            "instruction",
            "warn",
            f"the same score ({first!r}) under two instructions: api={probe.api!r} ignores the instruction",
            "For a custom instruction use api='dashscope' or 'siliconflow', or LocalReranker.",
            data,
        )
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


@contextlib.contextmanager
def _quiet_backend_warnings() -> Iterator[None]:
    """Drop the backend's warnings, "a document may exceed max_length" among them, while checks run.

    Every document sent is the check's own, some long on purpose: such a warning
    would be about a document the user never wrote, with a fix that does not apply.
    """
    backend_log = logging.getLogger(RemoteReranker.__module__)

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno != logging.WARNING

    backend_log.addFilter(keep)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "template='server' scores", QwenRerankWarning)
            yield
    finally:
        backend_log.removeFilter(keep)


FINDINGS: list[Callable[[Probe], Finding]] = [
    _constant,
    _rank_head,
    _usage,
    _template,
    _instruction,
    server_template_finding,
    _context,
]
"""The checks run once the server is reachable, in order."""
