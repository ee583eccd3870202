"""Error mapping: our InvalidInputError out of the framework's validation error that wraps it."""

from __future__ import annotations

from qwen_rerank.exceptions import InvalidInputError


def invalid_input_in(error: Exception) -> InvalidInputError | None:
    """A fresh copy of the InvalidInputError inside a pydantic ValidationError, if any.

    Pydantic wraps every ValueError raised while validating a model; adapters
    re-raise ours so users get (and can catch) the same error as from the core.
    Raise it outside the ``except`` block: pydantic's error quotes the input,
    secrets included, and must not become its ``__context__``.
    """
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return None
    for detail in errors():
        cause = (detail.get("ctx") or {}).get("error")
        if isinstance(cause, InvalidInputError):
            return InvalidInputError(str(cause))
    return None
