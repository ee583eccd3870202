"""What `check` tells a user to do: each fix from what was found, in one place."""

from __future__ import annotations

from qwen_rerank.tools._servers import LLAMA, PAGE, Server

__all__ = ["CONSTANT_FIXES", "RECONVERT", "serve_longer", "unreachable_fix"]

RECONVERT = (
    "Reconvert the checkpoint with a current llama.cpp's convert_hf_to_gguf.py, from a folder whose "
    "name contains 'qwen3-reranker' (that is how it recognises the reranker and keeps its rank head), "
    "then restart llama-server with --reranking."
)

GENERIC_FIX = "Check --base-url, --api, --model and the API key."


# What qwen_rerank.remote says of a reply whose scores are not probabilities (out of [0, 1], NaN,
# infinite), and of one not shaped as the dialect's: the evidence when the server is not recognised.
_NOT_PROBABILITIES = ("outside [0, 1]", "not a finite number")
_OTHER_SHAPE = "does it speak api="


def unreachable_fix(server: Server, api: str, malformed: bool, message: str = "") -> str:
    """The fix for a failed rerank call, from which server answers and how it failed (``message``)."""
    if server.name == PAGE:
        return (
            f"A web page answers, not a rerank server ({server.evidence}): a login page or a proxy "
            "in front of the server? " + GENERIC_FIX + " Point --base-url at the server itself."
        )
    if server.own_api is not None and not server.speaks(api):
        return f"This is {server.label} ({server.evidence}): use --api {server.own_api}."
    if not malformed:
        return GENERIC_FIX
    answers = f"{server.label} answers, but not with probabilities. "
    if server.name == LLAMA:
        return answers + RECONVERT
    if server.name == "vllm":  # raw logits: the model served without the reranker's classifier
        return answers + VLLM_OVERRIDES + "."
    if server.name in ("tei", "infinity"):
        return answers + SEQ_CLS_FIX
    if server.name is None and any(evidence in message for evidence in _NOT_PROBABILITIES):
        served = RECONVERT if api == "llamacpp" else CONSTANT_FIXES.get(api, _HEAD_FIX)
        return (
            f"The server answers, but not with probabilities. If it is the server --api {api} names: "
            f"{served} Otherwise pass the --api of this server, and check --base-url."
        )
    if server.name is None and _OTHER_SHAPE in message:
        return (
            f"The reply is not shaped as --api {api} says: pass the --api of this server (vllm, sglang, "
            "cohere, tei, infinity or llamacpp), and check --base-url."
        )
    return (
        f"The server answers, but not as --api {api} expects: check --api (the server's wire format), "
        "--base-url, and any proxy in front of the server."
    )


_HEAD_FIX = "Serve the model with its yes/no reranker head, as its model card says."


SEQ_CLS_FIX = (
    "Serve the -seq-cls conversion, whose classifier row is the LM head's yes row minus its no "
    "row: qwen_rerank.testing.convert_to_seq_cls(checkpoint, folder) writes one."
)
VLLM_OVERRIDES = (
    'Serve with --hf_overrides \'{"architectures": ["Qwen3ForSequenceClassification"], '
    '"classifier_from_token": ["no", "yes"], "is_original_qwen3_reranker": true}\''
)
CONSTANT_FIXES = {
    "vllm": VLLM_OVERRIDES + ", and use a vLLM release without the constant-score regression.",
    "tei": SEQ_CLS_FIX,
    "infinity": SEQ_CLS_FIX,
}


def serve_longer(max_length: int, llama: Server | None) -> str:
    """How to serve prompts of ``max_length`` tokens; on llama-server, a slot's context counts.

    llama-server splits ``-c`` over its ``-np`` slots (unless its KV cache is unified), and
    `/props` reports one slot's context: with several slots, either room for all of them or one.
    """
    if llama is None:
        return f"Serve with --max-model-len {max_length} or more"
    slots = llama.slots or 1
    if slots == 1 or llama.slot_tokens is None:
        return f"Start llama-server with -c {max_length} or more (and -ub {max_length} for speed)"
    return (
        f"Start llama-server with -c {max_length * slots} or more, or with -np 1 and -c {max_length} or "
        f"more (and -ub {max_length} for speed): its {slots} slots share -c, and each holds "
        f"{llama.slot_tokens} tokens now"
    )
