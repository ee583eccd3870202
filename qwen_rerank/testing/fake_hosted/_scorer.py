"""Token counts with the Qwen3 tokenizer, and scores from a LocalReranker on a checkpoint (or fake ones)."""

from __future__ import annotations

import json
import threading
import zlib
from pathlib import Path
from typing import Any

__all__ = ["Scorer"]


class Scorer:
    """Token counts with the Qwen3 tokenizer, and scores from a LocalReranker (or fake ones)."""

    def __init__(self, model_path: str | Path | None) -> None:
        from tokenizers import Tokenizer

        folder = Path(model_path) if model_path is not None else tokenizer_folder()
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._model_path = model_path
        self._reranker: Any = None
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def cut(self, text: str, cap: int) -> tuple[str, int]:
        """``text`` cut to its first ``cap`` tokens, and how many tokens it had."""
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        if len(encoding.ids) <= cap:
            return text, len(encoding.ids)
        return text[: encoding.offsets[cap - 1][1]] if cap > 0 else "", len(encoding.ids)

    def score(self, pairs: list[tuple[str, str]], instruction: str) -> list[float]:
        if self._model_path is None:
            return [zlib.crc32(json.dumps([instruction, q, d]).encode()) / 2**32 for q, d in pairs]
        with self._lock:
            if self._reranker is None:
                from qwen_rerank import LocalReranker

                self._reranker = LocalReranker(str(self._model_path), max_length=40960)
            reranker = self._reranker
            scores: list[float] = [0.0] * len(pairs)
            for query in dict.fromkeys(q for q, _ in pairs):
                where = [i for i, (q, _) in enumerate(pairs) if q == query]
                got = reranker.score(query, [pairs[i][1] for i in where], instruction=instruction)
                for i, s in zip(where, got, strict=True):
                    scores[i] = s
        return scores


def tokenizer_folder() -> Path:
    from qwen_rerank.testing import tokenizer_files_dir

    return tokenizer_files_dir()
