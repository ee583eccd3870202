"""The measures of an evaluation, computed by pytrec_eval (the library MTEB uses)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from qwen_rerank._imports import require
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.tools.evaluation._data import relevance_message, relevance_ok

__all__ = ["METRICS", "compute_metrics"]

METRICS: tuple[str, ...] = ("ndcg_at_10", "map_at_10", "mrr_at_10", "recall_at_10", "recall_at_100")
"""The measures reported, each a mean over judged queries, in [0, 1]."""

# Our name -> pytrec_eval's measure request and result key, on the full candidate list.
_FULL_LIST_MEASURES = {
    "ndcg_at_10": ("ndcg_cut.10", "ndcg_cut_10"),
    "map_at_10": ("map_cut.10", "map_cut_10"),
    "recall_at_10": ("recall.10", "recall_10"),
    "recall_at_100": ("recall.100", "recall_100"),
}
_MRR_DEPTH = 10


def compute_metrics(
    qrels: Mapping[str, Mapping[str, int]], rankings: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """Mean of each of `METRICS` over the queries of ``qrels``, by pytrec_eval.

    ``rankings`` maps a query id to document ids, best first; each list is
    evaluated in exactly that order. A judged query with no ranking scores 0.
    """
    pytrec_eval = require("pytrec_eval", "eval")
    judged = {q: dict(docs) for q, docs in qrels.items()}
    if not judged:
        raise InvalidInputError("qrels is empty: there is no judged query to evaluate.")
    for query_id, docs in judged.items():
        for doc_id, relevance in docs.items():
            if isinstance(relevance, bool) or not isinstance(relevance, int) or not relevance_ok(relevance):
                raise InvalidInputError(f"qrels[{query_id!r}][{doc_id!r}]: {relevance_message(relevance)}")
    full = {q: _ordered_scores(rankings.get(q, ())) for q in judged}
    cut = {q: _ordered_scores(rankings.get(q, ())[:_MRR_DEPTH]) for q in judged}
    full = {q: scores for q, scores in full.items() if scores}
    cut = {q: scores for q, scores in cut.items() if scores}
    requests = {request for request, _ in _FULL_LIST_MEASURES.values()}
    per_query = pytrec_eval.RelevanceEvaluator(judged, requests).evaluate(full)
    mrr = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(cut)
    means: dict[str, float] = {}
    for name in METRICS:
        if name == "mrr_at_10":
            values = [mrr.get(q, {}).get("recip_rank", 0.0) for q in judged]
        else:
            key = _FULL_LIST_MEASURES[name][1]
            values = [per_query.get(q, {}).get(key, 0.0) for q in judged]
        means[name] = float(sum(values) / len(values))
    return means


def _ordered_scores(doc_ids: Sequence[str]) -> dict[str, float]:
    # Strictly decreasing stand-in scores: pytrec_eval sorts by score (ties by
    # document id), so this makes it evaluate the list in exactly our order.
    return {doc_id: float(len(doc_ids) - position) for position, doc_id in enumerate(doc_ids)}
