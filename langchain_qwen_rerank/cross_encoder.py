"""``QwenCrossEncoder``: Qwen3-Reranker as a LangChain ``BaseCrossEncoder``."""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.cross_encoders import BaseCrossEncoder
from pydantic import ConfigDict

from qwen_rerank import InvalidInputError
from qwen_rerank.integrations.fields import BackendFields

__all__ = ["QwenCrossEncoder"]


class QwenCrossEncoder(BackendFields, BaseCrossEncoder):
    """Scores (query, document) pairs with Qwen3-Reranker, for ``CrossEncoderReranker``.

    ``score(text_pairs)`` returns one relevance in [0, 1] per pair, in input
    order. Pairs go to the backend's ``score_pairs``: grouped by query, each
    query's documents share its prompt prefix locally, and a vLLM fleet gets
    the queries' requests concurrently.

    Example:
        ```python
        from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
        from langchain_qwen_rerank import QwenCrossEncoder

        compressor = CrossEncoderReranker(model=QwenCrossEncoder(), top_n=5)
        ```

    It takes the same backend fields as ``QwenRerank`` (``model``,
    ``base_url``, ``reranker``...), with the same rules: a changed backend
    field rebuilds the backend, and ``close()`` releases one it built.
    """

    model_config = ConfigDict(extra="forbid")

    def score(self, text_pairs: Sequence[tuple[str, str]]) -> list[float]:
        """The relevance of each ``(query, document)`` pair, in input order.

        Raises:
            InvalidInputError: ``text_pairs`` is not a list of 2-item pairs of
                str (the message names the position).
        """
        if isinstance(text_pairs, (str, bytes)) or not isinstance(text_pairs, Sequence):
            raise InvalidInputError(
                f"text_pairs must be a list of (query, document) pairs, got {text_pairs!r}."
            )
        for position, pair in enumerate(text_pairs):
            if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
                raise InvalidInputError(
                    f"text_pairs[{position}] must be a (query, document) pair, got {type(pair).__name__}."
                )
        if not text_pairs:
            return []
        pairs = [(pair[0], pair[1]) for pair in text_pairs]
        instructions = None if self.instruction is None else [self.instruction] * len(pairs)
        return self._current_backend().get().score_pairs(pairs, instructions)
