"""Secrets an adapter holds, kept out of every text form: its reprs, dumps and pickled state.

``base_url`` may carry ``user:password@``, ``backend_options`` must not carry a key, and the API
key itself comes from the environment when the adapter is given none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from qwen_rerank._secrets import display_url
from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.remote import API_KEY_ENV

# backend_options keys that hold a secret, and the adapter field that keeps each one secret.
_SECRET_OPTIONS = {"api_key": "api_key"}
_HIDDEN = "**********"


def api_key_from_env() -> str | None:
    """The API key from ``QWEN_RERANK_API_KEY``, or None when unset or empty."""
    return os.environ.get(API_KEY_ENV) or None


def redact_urls(base_url: str | Sequence[str] | None) -> str | list[str] | None:
    """``base_url`` (one URL or a list) with any ``user:password@`` removed, for reprs and serialization."""
    if base_url is None:
        return None
    if isinstance(base_url, str):
        return display_url(base_url)
    return [display_url(url) if isinstance(url, str) else url for url in base_url]


def check_options_hold_no_secret(options: Mapping[str, Any]) -> None:
    """Refuse ``backend_options`` that hold a secret, which would be shown and serialized.

    Raises:
        InvalidInputError: ``options`` holds ``api_key``; the message names the field to use.
    """
    for option, field in _SECRET_OPTIONS.items():
        if option in options:
            raise InvalidInputError(
                f"backend_options holds {option!r}, which would then be shown and serialized in clear; "
                f"pass it as the adapter's own {field}= setting (kept secret) and remove it from "
                "backend_options."
            )


def public_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``backend_options`` fit to show or serialize: a secret in it is masked.

    [`adapter_backend`][qwen_rerank.integrations.adapters.adapter_backend] refuses
    such options; this keeps them hidden even where they were set past that check.
    """
    return {name: _HIDDEN if name in _SECRET_OPTIONS else value for name, value in options.items()}


class Sealed:
    """A value that no text form shows: its repr is masked, pickling carries it.

    Adapters seal a ``base_url`` with credentials in their pickled state, so
    that printing or logging that state never reveals the password. The pickle
    itself holds the value (an unpickled adapter must work): keep pickles of
    adapters as private as the secrets they hold.
    """

    def __init__(self, value: Any) -> None:
        self._value = value

    def reveal(self) -> Any:
        """The sealed value."""
        return self._value

    def __repr__(self) -> str:
        return f"Sealed({_HIDDEN!r})"


def seal_base_url(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of an adapter's pickled ``fields`` with ``base_url``, when set, `Sealed`."""
    sealed = dict(fields)
    if sealed.get("base_url") is not None:
        sealed["base_url"] = Sealed(sealed["base_url"])
    return sealed


def unseal_base_url(fields: Mapping[str, Any]) -> dict[str, Any]:
    """`seal_base_url` undone: ``fields`` with a `Sealed` ``base_url`` revealed."""
    url = fields.get("base_url")
    return {**fields, "base_url": url.reveal()} if isinstance(url, Sealed) else dict(fields)
