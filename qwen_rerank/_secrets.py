"""Keeping API keys and URL passwords out of messages, logs and reprs.

- `check_api_key`: a key that cannot travel in an HTTP header is refused at construction,
  with a message that does not quote it.
- `split_userinfo`: ``http://user:password@host`` becomes ``http://host`` plus a
  ``Basic`` ``Authorization`` value, so the password never sits in a URL that httpx logs.
- `Redactor`: replaces every run of text that shares 6 or more characters with a
  secret, so a key cut short by a truncated quote is still hidden.
- `guard_logs`: a filter on httpx's and httpcore's loggers that applies every live
  `Redactor` to their records (httpcore logs response headers at DEBUG, and a server
  may echo the key there).
"""

from __future__ import annotations

import base64
import logging
import threading
import weakref
from collections.abc import Iterable
from urllib.parse import unquote

import httpx

from qwen_rerank.exceptions import InvalidInputError

__all__ = ["MIN_FRAGMENT", "Redactor", "check_api_key", "display_url", "guard_logs", "split_userinfo"]

# No run of this many characters of a secret may appear anywhere.
MIN_FRAGMENT = 6
MASK = "***"


def check_api_key(key: object) -> str | None:
    """``key`` if it can be sent as ``Authorization: Bearer <key>``; '' and None give None."""
    if key is None or key == "":
        return None
    if not isinstance(key, str):
        raise InvalidInputError(f"api_key must be a str or None, got {type(key).__name__}.")
    for position, char in enumerate(key):
        if not " " < char <= "~":
            what = "a non-ASCII character" if ord(char) > 127 else "a space or control character"
            raise InvalidInputError(
                f"api_key holds {what} at position {position} (of {len(key)}); an HTTP header can carry "
                "only printable ASCII. Check for a stray newline or quote copied with the key."
            )
    return key


def split_userinfo(url: str) -> tuple[str, str | None, list[str]]:
    """``url`` without ``user:password@``, the matching Basic auth value, and the secrets to hide.

    A URL without credentials comes back unchanged, with ``None`` and no secrets.
    """
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return url, None, []
    if not parsed.userinfo:
        return url, None, []
    user, _, password = parsed.userinfo.decode("ascii").partition(":")
    user, password = unquote(user), unquote(password)
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    plain = str(parsed.copy_with(userinfo=b""))
    return plain, f"Basic {token}", [s for s in (password, token) if s]


class Redactor:
    """Hides every fragment of at least `MIN_FRAGMENT` characters of its secrets."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = [s for s in secrets if s]
        self._grams: dict[int, set[str]] = {}
        for secret in self.secrets:
            n = min(MIN_FRAGMENT, len(secret))
            self._grams.setdefault(n, set()).update(secret[i : i + n] for i in range(len(secret) - n + 1))

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def __call__(self, text: str) -> str:
        if not self._grams:
            return text
        covered = bytearray(len(text))
        for n, grams in self._grams.items():
            for i in range(len(text) - n + 1):
                if text[i : i + n] in grams:
                    covered[i : i + n] = b"\x01" * n
        if not any(covered):
            return text
        out, i = [], 0
        while i < len(text):
            if covered[i]:
                while i < len(text) and covered[i]:
                    i += 1
                out.append(MASK)
            else:
                j = covered.find(1, i)
                j = len(text) if j < 0 else j
                out.append(text[i:j])
                i = j
        return "".join(out)


_LIVE: weakref.WeakSet[Redactor] = weakref.WeakSet()
_GUARDED_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
)
_guard_lock = threading.Lock()


class _RedactingFilter(logging.Filter):
    """Rewrites a record's message with every live redactor before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        redactors = list(_LIVE)
        if redactors:
            message = record.getMessage()
            for redact in redactors:
                message = redact(message)
            record.msg, record.args = message, None
        return True


_FILTER = _RedactingFilter()


def guard_logs(redactor: Redactor) -> None:
    """Apply ``redactor`` to httpx's and httpcore's log records for as long as it lives."""
    if not redactor:
        return
    with _guard_lock:
        _LIVE.add(redactor)
        for name in _GUARDED_LOGGERS:
            target = logging.getLogger(name)
            if _FILTER not in target.filters:
                target.addFilter(_FILTER)


def display_url(url: str) -> str:
    """``url`` without any user:password part, for messages, logs, reprs and serialized forms."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid URL>"
    return str(parsed.copy_with(userinfo=b"")) if parsed.userinfo else url
