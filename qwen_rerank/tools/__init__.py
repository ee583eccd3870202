"""Tools built on the rerankers: evaluation, threshold calibration, the demo page, server diagnosis.

- [`qwen_rerank.tools.evaluation`][]: a first-stage run on a BEIR-layout dataset, measured
  before and after reranking (`qwen-rerank eval`).
- [`qwen_rerank.tools.calibration`][]: score thresholds calibrated on labelled data
  (`qwen-rerank calibrate`).
- [`qwen_rerank.tools.demo`][]: a Gradio page and HTTP API that rerank your own documents
  (`qwen-rerank demo`).
- [`qwen_rerank.tools.diagnose`][]: whether a server serves Qwen3-Reranker correctly
  (`qwen-rerank check`).

Each `qwen-rerank` command named above only parses its arguments and prints; the work is done
here, so the same functions serve a script or a notebook. Importing this package imports none of
its modules.
"""

__all__: list[str] = []
