"""MTEB-style evaluation of a reranker: a BEIR-layout dataset, a first-stage run, pytrec_eval.

The pieces are plain functions, so a notebook or a script can use them one by
one; `evaluate` chains them and ``qwen-rerank eval`` prints its report:

<!-- not run by the tests: needs the SciFact dataset and a BM25 run in data/scifact -->
```python
from qwen_rerank import create_reranker
from qwen_rerank.tools.evaluation import evaluate, format_table

report = evaluate(create_reranker(), "data/scifact", "data/scifact/bm25.trec")
print(format_table(report))
```

**Data.** A dataset folder holds ``corpus.jsonl`` (``_id``, ``title``,
``text``), ``queries.jsonl`` (``_id``, ``text``) and ``qrels/<split>.tsv``
(``query-id``, ``corpus-id``, ``score``, with a header line). A document's
text is ``title + " " + text``, stripped, as MTEB builds it. The first-stage
run is a TREC run file: ``qid Q0 docid rank score tag`` per line.

**Candidates.** Each judged query's candidates are its ``top_k`` documents by
first-stage score (ties keep file order). Queries of the run without qrels in
the split are not reranked; judged queries missing from the run count with
every measure 0. Both cases are reported as notes, never dropped silently.

**Measures.** `METRICS`, computed by pytrec_eval (the library MTEB uses)
over the judged queries and averaged: ``ndcg_cut_10``, ``map_cut_10``,
``recall_10`` and ``recall_100`` on the candidate list, ``recip_rank`` on the
list cut to its top 10 (MRR@10). The first-stage column uses the same top-k
candidates in first-stage order, so both columns compare like with like.
Each list is evaluated in exactly the order given: ties in score never let
pytrec_eval reorder it.

**Relevance** in qrels is an integer from -1000 to 1000 (`RELEVANCE_RANGE`);
0 and below count as not relevant, and graded levels above 1 weigh more in
nDCG. Values outside that range are rejected with the file and line, rather
than handed to pytrec_eval, which allocates memory per level and overflows
near 2**31.

**Bad data** raises [`DataFormatError`][qwen_rerank.tools.evaluation.DataFormatError] naming the file
and line.
"""

from __future__ import annotations

from qwen_rerank.tools.evaluation._data import (
    RELEVANCE_RANGE,
    DataFormatError,
    Dataset,
    Run,
    document_text,
    load_corpus,
    load_dataset,
    load_qrels,
    load_queries,
    load_run,
    write_trec,
)
from qwen_rerank.tools.evaluation._evaluate import (
    DEFAULT_BATCH_QUERIES,
    Candidates,
    EvalReport,
    evaluate,
    format_table,
    rerank_candidates,
    select_candidates,
)
from qwen_rerank.tools.evaluation._metrics import METRICS, compute_metrics

__all__ = [
    "DEFAULT_BATCH_QUERIES",
    "METRICS",
    "RELEVANCE_RANGE",
    "Candidates",
    "DataFormatError",
    "Dataset",
    "EvalReport",
    "Run",
    "compute_metrics",
    "document_text",
    "evaluate",
    "format_table",
    "load_corpus",
    "load_dataset",
    "load_qrels",
    "load_queries",
    "load_run",
    "rerank_candidates",
    "select_candidates",
    "write_trec",
]
