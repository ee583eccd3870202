"""A fake rerank server on loopback: real HTTP, vLLM's, SGLang's and Cohere's shapes, faults on demand.

Use it to test an application against a server that behaves like ``vllm serve
Qwen/Qwen3-Reranker-* --runner pooling --hf_overrides ...``, and that misbehaves when asked,
without a GPU:

```python
from qwen_rerank import VLLMReranker
from qwen_rerank.testing import FakeVLLMServer, make_tiny_reranker

with FakeVLLMServer(str(make_tiny_reranker())) as server:
    reranker = VLLMReranker(server.url)
    reranker.score("what is a panda?", ["A bear.", "A city."])
    server.add_fault("status", status=503, times=2)   # the next 2 rerank calls fail
    server.requests                    # recorded RecordedRequest(method, path, headers, body)
```

Or from a shell: ``python -m qwen_rerank.testing.fake_vllm [--model PATH] [--api sglang]``
prints the URL and serves until Ctrl-C (without ``--model`` it builds the tiny model once).

It shares no code with qwen_rerank on purpose. ``api`` picks the wire format, served at
``/rerank``, ``/v1/rerank`` and ``/v2/rerank`` alike:

- ``"vllm"``: ``{"model"?, "query", "documents", "top_n"?, "instruction"?,
  "chat_template_kwargs"?, "max_tokens_per_doc"?}`` answered with ``{"id", "model",
  "usage", "results": [{"index", "document": {"text"}, "relevance_score"}]}``.
- ``"sglang"``: ``{"query", "documents", "instruct"?, "top_n"?, "return_documents"?}``
  answered with a bare list ``[{"score", "index", "document"?, "meta_info"}]``
  (``meta_info.prompt_tokens`` per document); a ``model`` field is ignored.
- ``"cohere"``: ``{"model", "query", "documents", "top_n"?}`` (model required) answered
  with ``{"id", "results": [{"index", "relevance_score"}], "meta": {"tokens": ...}}``.

Results are sorted by score, highest first. Without a score template (the default, like
vLLM started without ``--chat-template``) a pair is scored from the plain concatenation
``query + document``, tokenized by the full tokenizer (so ``<|im_end|>`` in text becomes
the control token, as in vLLM). With ``template=True`` it renders the Qwen3 reranker
template around the raw query and document, with the dialect's instruction field (or the
default); ``template="vllm"`` renders it as vLLM 0.33 renders the template it ships, without
the final newline. A prompt longer than ``max_model_len`` tokens is refused with vLLM's HTTP
400. ``GET /v1/models``, ``/health``, ``/version`` and ``/stats`` answer too, and so do
``POST /score`` (``/v1/score``), ``/tokenize`` (a ``prompt``, or ``messages`` rendered by the
template) and ``/detokenize``, as vLLM's do.

Scores come from the tiny model through transformers (softmax over the "no"/"yes" logits at
the last position); with ``model_path=None`` the server answers at once with a fake,
deterministic score per pair (for benchmarks of the client alone).

Faults apply to rerank requests, in the order they were added; ``times`` says how many
requests each one hits. Kinds:

==================  =============================================================
``delay``           sleep ``seconds`` then answer normally
``status``          answer ``status`` with an error body; ``shape`` is ``"error"``
                    (``{"error": {...}}``), ``"flat"`` (``{"object": "error", ...}``),
                    ``"string"`` (``{"error": "..."}``) or ``"text"`` (plain text);
                    ``message``; optional ``retry_after`` header value
``echo_auth``       400 whose message repeats the request's Authorization header
``echo_headers``    a normal answer with the Authorization header echoed in a
                    response header (``X-Echo-Authorization``)
``garbage``         200 with a body that is not JSON
``json``            200 with ``body`` (any JSON value) as the whole response
``shuffle``         results in a random order instead of by score
``wrong_text``      ``document.text`` of the results rotated (index stays right)
``drop_index``      one result missing
``duplicate_index`` one result's index repeated in place of another
``bad_index``       one index out of range (``len(documents)``)
``nan_score``       one score NaN
``string_score``    one score sent as a JSON string
``constant``        every score equal to ``value`` (default 0.5), a known server bug
``drop``            close the connection without sending any response
``trickle``         200 headers, then a ``size``-byte body ``chunk`` bytes every
                    ``interval`` seconds
``break_body``      200 headers, part of the body, then the connection closes
``gzip_bomb``       200 with ``Content-Encoding: gzip``: ``size`` zero bytes
                    (default 200 MB) compressed to about 0.1% of that
``huge``            200 with a JSON body of ``size`` bytes (default 64 MB)
``deep_json``       200 with ``depth`` nested JSON arrays (default 100,000)
==================  =============================================================
"""

from __future__ import annotations

# APIS and FAULT_KINDS are importable from here, as they always were, outside __all__.
from qwen_rerank.testing.fake_vllm._dialects import APIS as APIS
from qwen_rerank.testing.fake_vllm._faults import FAULT_KINDS as FAULT_KINDS
from qwen_rerank.testing.fake_vllm._faults import Fault
from qwen_rerank.testing.fake_vllm._http import RecordedRequest, closed_port_url
from qwen_rerank.testing.fake_vllm._server import FakeVLLMServer

__all__ = ["FakeVLLMServer", "Fault", "RecordedRequest", "closed_port_url"]
