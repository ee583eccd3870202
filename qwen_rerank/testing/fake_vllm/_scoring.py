"""How the fake server scores: with the tiny model through transformers, or with fake scores at once.

torch and transformers are imported only when a `ModelScorer` is built, so the server runs
without them in instant mode (``model_path=None``).
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable
from typing import Any

from qwen_rerank.testing.fake_vllm._dialects import Refusal, error_body


class ModelScorer:
    """softmax([logit(no), logit(yes)])[1] at the last position, with transformers."""

    def __init__(self, model_path: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from qwen_rerank.local import quiet_progress_bars

        self.torch = torch
        with quiet_progress_bars():  # a server in a test or an example prints no loading bars
            self.tokenizer = AutoTokenizer.from_pretrained(model_path)
            self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        self.model.eval()  # type: ignore[no-untyped-call]
        self.yes = self.tokenizer.convert_tokens_to_ids("yes")
        self.no = self.tokenizer.convert_tokens_to_ids("no")
        self.pad = self.tokenizer.pad_token_id or 0
        self.lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text)["input_ids"]
        return ids

    def score(self, prompts: list[list[int]]) -> list[float]:
        torch = self.torch
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, p in enumerate(prompts):
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        with self.lock, torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1, :]
            pair = torch.stack([logits[:, self.no], logits[:, self.yes]], dim=1).float()
            scores: list[float] = torch.softmax(pair, dim=1)[:, 1].tolist()
        return scores


def score_documents(
    scorer: ModelScorer | None,
    documents: list[Any],
    prompt_of: Callable[[str], str],
    *,
    cut_to: Any,
    max_model_len: int,
) -> tuple[list[float], list[int]]:
    """The score and token count of every document, in order.

    ``prompt_of`` turns a document into the text scored. With a model, a document is first cut to
    ``cut_to`` tokens when that is positive (``None``: never cut), and a prompt longer than
    ``max_model_len`` tokens is refused as vLLM refuses it; without one, each text gets a fake,
    deterministic score.

    Raises:
        Refusal: A document is not a str, or a prompt is too long.
    """
    prompts: list[list[int]] = []
    texts: list[str] = []
    for doc in documents:
        if not isinstance(doc, str):
            raise Refusal(400, error_body("documents must be strings", "error"))
        if scorer is not None and cut_to is not None and cut_to > 0:
            doc = scorer.tokenizer.decode(scorer.encode(doc)[:cut_to])
        text = prompt_of(doc)
        texts.append(text)
        if scorer is not None:
            ids = scorer.encode(text)
            if len(ids) > max_model_len:
                refusal = error_body(_too_long(max_model_len), "error")
                refusal["error"]["param"] = "input_tokens"
                raise Refusal(400, refusal)
            prompts.append(ids)
    if scorer is not None:
        return scorer.score(prompts), [len(p) for p in prompts]
    return [zlib.crc32(t.encode()) / 2**32 for t in texts], [len(t) // 4 for t in texts]


def _too_long(max_model_len: int) -> str:
    # vLLM 0.33 tokenizes at most one token past the limit, so it never says the whole count.
    over = max_model_len + 1
    return (
        f"This model's maximum context length is {max_model_len} tokens. However, your prompt "
        f"contains at least {over} input tokens, which exceeds this limit even without any output "
        f"tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value={over})"
    )
