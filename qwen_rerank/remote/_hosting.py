"""What differs between a server the user runs and a hosted API, resolved once at construction.

[`Hosting`][qwen_rerank.remote._hosting.Hosting] holds where requests go, the key they
carry and, for a hosted API, its provider's row of limits:

- a self-hosted server needs ``base_url``; its key is ``api_key`` or ``QWEN_RERANK_API_KEY``;
- a hosted API (``api="dashscope"``, ``"siliconflow"``, ``"deepinfra"``) defaults to its
  public endpoint, or to the one region that lists the model (``region=`` picks another),
  reads its key from ``api_key`` or the provider's own variable (a missing key fails here,
  naming it), never sends it over plain ``http://`` to a host other than loopback unless
  ``allow_http=True``, and sets the defaults of document count, concurrency and prompt
  length from the provider's limits.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any

import httpx

from qwen_rerank.exceptions import InvalidInputError
from qwen_rerank.remote._dialects import Dialect
from qwen_rerank.remote._providers import HostedModel, Provider, find_model
from qwen_rerank.remote._splitting import RequestLimits
from qwen_rerank.results import Usage

__all__ = ["API_KEY_ENV", "Hosting", "priced"]

API_KEY_ENV = "QWEN_RERANK_API_KEY"

# The defaults for a server the user runs, and for a hosted model whose row gives no such limit.
_CONCURRENCY, _LENGTH = 8, 8192


@dataclass(frozen=True)
class Hosting:
    """Where requests go, with which key, and the limits of the provider's model (hosted only)."""

    base_url: Any  # a URL or a list of replicas, checked by Endpoints
    api_key: str | None = field(repr=False)
    model: str | None
    provider: Provider | None = None
    row: HostedModel | None = None  # None: self-hosted, or a model the table does not know

    @classmethod
    def check(
        cls, dialect: Dialect, base_url: Any, region: Any, api_key: Any, model: Any, allow_http: bool
    ) -> Hosting:
        provider = dialect.hosted
        if provider is None:
            if region is not None:
                raise InvalidInputError(
                    f"region= picks the endpoint of a hosted API; api={dialect.name!r} is a server you run: "
                    "give its URL as base_url=."
                )
            if base_url is None:
                raise InvalidInputError(
                    f"api={dialect.name!r} needs base_url=, your server's URL (e.g. "
                    "'http://localhost:8000'). With no server, use a hosted API: api='dashscope', "
                    "'siliconflow' or 'deepinfra'."
                )
            return cls(base_url, api_key if api_key is not None else os.environ.get(API_KEY_ENV), model)
        model = provider.default_model if model is None else model
        row = find_model(provider.name, model) if isinstance(model, str) else None
        urls = _hosted_url(provider, base_url, region, row)
        if not allow_http:
            _refuse_plain_http(provider, urls)
        return cls(urls, _hosted_key(provider, api_key), model, provider, row)

    def sizes(self, max_documents: Any, max_concurrency: Any, max_length: Any) -> tuple[Any, Any, Any]:
        """The document count, concurrency and prompt length to use: those given, else the defaults."""
        row, provider = self.row, self.provider
        cap = None if row is None else row.max_tokens_per_item or row.max_tokens_per_pair
        if cap is not None and isinstance(max_length, int) and max_length > cap:
            raise InvalidInputError(
                f"max_length={max_length} is over what api={row and row.provider!r} reads of "
                f"{self.model!r} ({cap:,} tokens); pass at most {cap}, or leave it unset."
            )
        if max_documents is None and row is not None:
            max_documents = row.max_documents_per_request  # None: the dialect's own default
        if max_concurrency is None:
            max_concurrency = _CONCURRENCY if provider is None else provider.default_concurrency
        if max_length is None:
            max_length = cap or _LENGTH
        return max_documents, max_concurrency, max_length

    def budget(self, max_documents: int) -> RequestLimits | None:
        """What one request to the hosted model may hold; ``None`` for a server the user runs."""
        if self.provider is None:
            return None
        if self.row is None:
            return RequestLimits(self.provider.name, max_documents)
        return RequestLimits.of(self.row, max_documents)


def _hosted_url(provider: Provider, base_url: Any, region: Any, row: HostedModel | None) -> Any:
    """``base_url``, else ``region``'s endpoint, else the model's own region's, else the provider's."""
    if region is None:
        if base_url is not None:
            return base_url
        if row is not None and row.region is not None:
            return provider.regions[row.region]
        return provider.default_base_url
    if base_url is not None:
        raise InvalidInputError("Pass base_url= or region=, not both: a region names its endpoint.")
    if region not in provider.regions:
        raise InvalidInputError(
            f"api={provider.name!r} has the regions {sorted(provider.regions)}, got region={region!r}."
        )
    return provider.regions[region]


def _hosted_key(provider: Provider, api_key: Any) -> Any:
    if api_key is not None:
        return api_key
    names = (provider.key_env,) if provider.key_env_alt is None else (provider.key_env, provider.key_env_alt)
    key = next((os.environ[name] for name in names if os.environ.get(name)), None)
    if key is None:
        raise InvalidInputError(
            f"api={provider.name!r} needs an API key: set the {provider.key_env} environment variable, "
            "or pass api_key=."
        )
    return key


def _refuse_plain_http(provider: Provider, base_url: Any) -> None:
    """Refuse to send the provider's key in clear text over the network (loopback is fine)."""
    for url in [base_url] if isinstance(base_url, str) else base_url or []:
        try:
            parsed = httpx.URL(url) if isinstance(url, str) else None
        except httpx.InvalidURL:
            continue  # Endpoints.check says what is wrong with it
        if parsed is not None and parsed.scheme == "http" and not _is_loopback(parsed.host):
            raise InvalidInputError(
                f"base_url http://{parsed.host} is plain http: the api={provider.name!r} key would cross "
                "the network unencrypted. Use https://, or pass allow_http=True if the network "
                "between is yours."
            )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def priced(usage: Usage | None, price: float | None) -> Usage | None:
    """``usage`` with its ``cost`` at ``price`` per million tokens, where both are known."""
    if usage is None or price is None or usage.total_tokens is None:
        return usage
    return dataclasses.replace(usage, cost=usage.total_tokens * price / 1e6)
