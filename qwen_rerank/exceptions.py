"""Exceptions raised by qwen-rerank.

Every error the library raises on purpose is a [`QwenRerankError`][qwen_rerank.QwenRerankError],
so one `except QwenRerankError` catches them all:

```text
QwenRerankError
 ├── InvalidInputError (also ValueError)   bad argument or document
 │    ├── DataFormatError *                a dataset or run file is missing or malformed (evaluation)
 │    ├── UsageError *                     a command line that cannot work (qwen-rerank, exit status 2)
 │    └── _PageError *                     demo page input that cannot be ranked (shown in the page)
 ├── MissingDependencyError (also ImportError)   an optional extra is not installed
 ├── ModelLoadError                        a local model could not be found or loaded
 ├── OutOfMemoryError                      the device ran out of memory, even one document at a time
 ├── InvalidScoreError                     the model scored a document with no probability (NaN...)
 └── RemoteError                           anything that went wrong talking to a vLLM server
      ├── APIStatusError                   the server answered with an HTTP error status
      ├── RemoteTimeoutError               the server did not answer in time
      ├── RemoteConnectionError            no server could be reached, after retries and failover
      └── MalformedResponseError           the server answered, but not with a valid rerank response
```

The classes marked `*` belong to a wing and are defined there, beside the code that raises
them, since the core imports no wing (`.importlinter`); they are drawn here so that the tree
is whole:
[`qwen_rerank.tools.evaluation.DataFormatError`][qwen_rerank.tools.evaluation.DataFormatError]
(`qwen-rerank rank` raises it too, for a bad documents file),
[`qwen_rerank.cli.UsageError`][qwen_rerank.cli.UsageError], and `_PageError`, private to
`qwen_rerank.tools.demo`.

Errors from the libraries underneath (httpx, transformers, torch) are translated
into the most specific class above, with the original kept as `__cause__`.

Warnings (settings that work, but far worse than they could) are a
[`QwenRerankWarning`][qwen_rerank.QwenRerankWarning], a `UserWarning`, so
`warnings.filterwarnings("error", category=QwenRerankWarning)` turns them into errors.
"""

from __future__ import annotations

__all__ = [
    "APIStatusError",
    "InvalidInputError",
    "InvalidScoreError",
    "MalformedResponseError",
    "MissingDependencyError",
    "ModelLoadError",
    "OutOfMemoryError",
    "QwenRerankError",
    "QwenRerankWarning",
    "RemoteConnectionError",
    "RemoteError",
    "RemoteTimeoutError",
]


class QwenRerankError(Exception):
    """Base class of every error raised by qwen-rerank."""


class QwenRerankWarning(UserWarning):
    """Base class of every warning qwen-rerank emits: a setting that works, but badly on this machine."""


class InvalidInputError(QwenRerankError, ValueError):
    """An argument or a document is not valid; the message names it and the fix."""


class MissingDependencyError(QwenRerankError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class ModelLoadError(QwenRerankError):
    """A local model or tokenizer could not be found or loaded."""


class OutOfMemoryError(QwenRerankError):
    """The device ran out of memory even when scoring one document at a time."""


class InvalidScoreError(QwenRerankError):
    """The backend scored a document with a value that is not a probability in [0, 1].

    A NaN from a broken checkpoint or a float16 overflow, say. A server's invalid
    score is a [`MalformedResponseError`][qwen_rerank.MalformedResponseError].
    """


class RemoteError(QwenRerankError):
    """Something went wrong while talking to a vLLM server."""


class APIStatusError(RemoteError):
    """The server answered with an HTTP error status.

    `status_code` is the HTTP status and `server_message` the server's own
    error message, when it sent one.
    """

    def __init__(self, message: str, *, status_code: int, server_message: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.server_message = server_message


class RemoteTimeoutError(RemoteError):
    """The server did not answer within the timeout."""


class RemoteConnectionError(RemoteError):
    """No server could be reached, after every retry and every replica."""


class MalformedResponseError(RemoteError):
    """The server answered, but the body is not a valid, complete rerank response."""
