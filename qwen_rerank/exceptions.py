"""Exceptions raised by qwen-rerank.

Every error the library raises on purpose is a [`QwenRerankError`][qwen_rerank.QwenRerankError],
so one `except QwenRerankError` catches them all:

```text
QwenRerankError
 ├── InvalidInputError (also ValueError)   bad argument or document
 │    ├── DataFormatError                  a dataset or run file is missing or malformed (evaluation)
 │    ├── UsageError                       a command line that cannot work (qwen-rerank, exit status 2)
 │    └── _PageError                       demo page input that cannot be ranked (shown in the page)
 ├── MissingDependencyError (also ImportError)   an optional extra is not installed
 ├── ModelLoadError                        a local model could not be found or loaded
 ├── OutOfMemoryError                      the device ran out of memory, even one document at a time
 └── RemoteError                           anything that went wrong talking to a vLLM server
      ├── APIStatusError                   the server answered with an HTTP error status
      ├── RemoteTimeoutError               the server did not answer in time
      ├── RemoteConnectionError            no server could be reached, after retries and failover
      └── MalformedResponseError           the server answered, but not with a valid rerank response
```

Errors from the libraries underneath (httpx, transformers, torch) are translated
into the most specific class above, with the original kept as `__cause__`.

Warnings (settings that work, but far worse than they could) are a
[`QwenRerankWarning`][qwen_rerank.QwenRerankWarning], a `UserWarning`, so
`warnings.filterwarnings("error", category=QwenRerankWarning)` turns them into errors.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "APIStatusError",
    "DataFormatError",
    "InvalidInputError",
    "MalformedResponseError",
    "MissingDependencyError",
    "ModelLoadError",
    "OutOfMemoryError",
    "QwenRerankError",
    "QwenRerankWarning",
    "RemoteConnectionError",
    "RemoteError",
    "RemoteTimeoutError",
    "UsageError",
]


class QwenRerankError(Exception):
    """Base class of every error raised by qwen-rerank."""


class QwenRerankWarning(UserWarning):
    """Base class of every warning qwen-rerank emits: a setting that works, but badly on this machine."""


class InvalidInputError(QwenRerankError, ValueError):
    """An argument or a document is not valid; the message names it and the fix."""


class DataFormatError(InvalidInputError):
    """A dataset or run file is missing or malformed.

    The message starts with `path:line:` (or `path:` for the file as a
    whole); `path` and `line` are also attributes.
    """

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {message}")


class UsageError(InvalidInputError):
    """The `qwen-rerank` command line asks for something that cannot work; exit status 2."""


class _PageError(InvalidInputError):
    """Input the demo page cannot rank; shown in the page as a message."""


class MissingDependencyError(QwenRerankError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class ModelLoadError(QwenRerankError):
    """A local model or tokenizer could not be found or loaded."""


class OutOfMemoryError(QwenRerankError):
    """The device ran out of memory even when scoring one document at a time."""


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
