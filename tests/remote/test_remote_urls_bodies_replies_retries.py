"""The remote backend's pure parts: URLs, splitting, response checks, the retry flow, client-side prompts."""

from __future__ import annotations

import base64
import email.utils
import gzip
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwen_rerank import _secrets
from qwen_rerank._secrets import Redactor, check_api_key, split_userinfo
from qwen_rerank.exceptions import (
    APIStatusError,
    InvalidInputError,
    MalformedResponseError,
    RemoteConnectionError,
    RemoteTimeoutError,
)
from qwen_rerank.prompt import (
    DEFAULT_INSTRUCTION,
    PromptTokenizer,
    escape_control_tokens,
    format_prompt,
    split_prompt,
    split_prompts,
)
from qwen_rerank.remote import _bodies, _replies, _retry, _urls
from qwen_rerank.remote._dialects import DIALECTS, Usage, encode_body

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


# -- URLs and bodies -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://h:8000", "http://h:8000/v1/rerank"),
        ("http://h:8000/", "http://h:8000/v1/rerank"),
        ("http://h:8000/v1", "http://h:8000/v1/rerank"),
        ("https://h/v1/", "https://h/v1/rerank"),
        ("http://h:8000/v1/rerank", "http://h:8000/v1/rerank"),
        ("http://gateway/vllm/v1", "http://gateway/vllm/v1/rerank"),
        ("  http://h:8000  ", "http://h:8000/v1/rerank"),
    ],
)
def test_rerank_url(base: str, expected: str) -> None:
    assert _urls.rerank_url(base) == expected


@pytest.mark.parametrize("base", ["", "h:8000", "ftp://h", "http://", None, 8000])
def test_rerank_url_rejects(base: Any) -> None:
    with pytest.raises(InvalidInputError, match="base_url"):
        _urls.rerank_url(base)


def test_display_url_hides_credentials() -> None:
    assert _secrets.display_url("http://user:pw@h:1/v1/rerank") == "http://h:1/v1/rerank"
    assert _secrets.display_url("http://h:1/v1") == "http://h:1/v1"


@pytest.mark.parametrize(
    ("count", "size", "expected"),
    [
        (1, 128, [(0, 1)]),
        (128, 128, [(0, 128)]),
        (129, 128, [(0, 65), (65, 129)]),
        (10, 3, [(0, 3), (3, 6), (6, 8), (8, 10)]),
        (5, 1, [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]),
    ],
)
def test_chunk_bounds(count: int, size: int, expected: list[tuple[int, int]]) -> None:
    assert _bodies.chunk_bounds(count, size) == expected


def test_encode_body_omits_model_none_and_keeps_unicode() -> None:
    vllm = DIALECTS["vllm"]
    body = json.loads(encode_body(vllm, "q", ["é", "<"], None, instruction="i"))
    assert body == {
        "query": "q",
        "documents": ["é", "<"],
        "instruction": "i",
        "chat_template_kwargs": {"instruction": "i"},
    }
    assert json.loads(encode_body(vllm, "q", ["d"], "m"))["model"] == "m"


# -- responses -----------------------------------------------------------------------------------
def _results(pairs: list[tuple[Any, Any]]) -> bytes:
    return json.dumps(
        {"results": [{"index": i, "document": {"text": "x"}, "relevance_score": s} for i, s in pairs]}
    ).encode()


def test_parse_scores_maps_by_index() -> None:
    assert _replies.parse_scores(_results([(2, 0.9), (0, 0.1), (1, 0.5)]), 3, "http://h").scores == [
        0.1,
        0.5,
        0.9,
    ]
    assert _replies.parse_scores(_results([(0, 1), (1, 0)]), 2, "http://h").scores == [1.0, 0.0]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b'{"data": []}', "without a 'results' list"),
        (b'{"results": {}}', "without a 'results' list"),
        (b'{"results": [1]}', "index None"),
        (_results([(0, 0.1), (True, 0.2)]), "index True"),
        (_results([(0, 0.1), (1.0, 0.2)]), "index 1.0"),
        (_results([(0, 0.1), (-1, 0.2)]), "index -1"),
        (_results([(0, 0.1), (0, 0.2)]), "twice"),
        (_results([(0, 0.1)]), r"missing indices \[1\]"),
        (_results([(0, 0.1), (1, None)]), "not a finite number"),
        (_results([(0, 0.1), (1, True)]), "not a finite number"),
        (
            b'{"results": [{"index": 0, "relevance_score": NaN}, {"index": 1, "relevance_score": 0}]}',
            "finite",
        ),
        (b'{"results": [{"index": 0, "relevance_score": Infinity}]}', "finite"),
        (_results([(0, 0.1), (1, -0.01)]), r"outside \[0, 1\]"),
    ],
)
def test_parse_scores_rejects(content: bytes, match: str) -> None:
    with pytest.raises(MalformedResponseError, match=match):
        _replies.parse_scores(content, 2, "http://h")


def test_parse_scores_redacts_quoted_body() -> None:
    with pytest.raises(MalformedResponseError) as info:
        _replies.parse_scores(
            b"token sk-123 rejected", 1, "http://h", redact=lambda t: t.replace("sk-123", "***")
        )
    assert "sk-123" not in str(info.value) and "***" in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"error": {"message": "bad", "type": "BadRequestError", "param": null, "code": 400}}', "bad"),
        (b'{"object": "error", "message": "old bad", "type": "x", "param": null, "code": 400}', "old bad"),
        (b'{"error": "Unauthorized"}', "Unauthorized"),
        (b'{"detail": "Not Found"}', "Not Found"),
        (b'{"detail": [{"loc": ["body", "query"], "msg": "field required"}]}', "field required"),
        (b"upstream connect error", "upstream connect error"),
        (b"", None),
    ],
)
def test_server_message_shapes(content: bytes, message: str | None) -> None:
    got = _replies.server_message(content)
    assert got == message if message is None else (got is not None and message in got)


def test_status_error_carries_status_message_and_hint() -> None:
    error = _replies.status_error(401, b'{"error": "Unauthorized"}', "http://u:p@h/v1/rerank")
    assert error.status_code == 401 and error.server_message == "Unauthorized"
    assert "HTTP 401: Unauthorized" in str(error) and "api_key" in str(error) and "u:p" not in str(error)


def test_parse_retry_after() -> None:
    assert _replies.parse_retry_after("2") == 2.0
    assert _replies.parse_retry_after(" 0.5 ") == 0.5
    assert _replies.parse_retry_after("-3") == 0.0
    assert _replies.parse_retry_after(None) is None
    assert _replies.parse_retry_after("soon") is None
    assert _replies.parse_retry_after("nan") is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= (_replies.parse_retry_after(date, now) or 0) <= 31


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    policy = _retry.RetryPolicy(max_retries=5, backoff=0.5, max_wait=3.0)
    assert policy.wait(0, None, rand=lambda: 0.0) == 0.25
    assert policy.wait(0, None, rand=lambda: 1.0) == 0.5
    assert policy.wait(2, None, rand=lambda: 1.0) == 2.0
    assert policy.wait(9, None, rand=lambda: 1.0) == 3.0
    assert policy.wait(0, 7.5) == 7.5  # Retry-After wins


# -- the retry flow, driven by hand ----------------------------------------------------------------
OK = _retry.Reply(200, _results([(0, 0.25)]))
REQUEST = httpx.Request("POST", "http://h/v1/rerank")


def drive(flow: _retry.Flow, outcomes: list[Any]) -> tuple[list[Any], Any]:
    """Feed ``outcomes`` to each Send; return the actions seen and the result (or raised error)."""
    actions: list[Any] = []
    feed = iter(outcomes)
    try:
        action = next(flow)
        while True:
            actions.append(action)
            action = flow.send(None if isinstance(action, _retry.Sleep) else next(feed))
    except StopIteration as done:
        return actions, done.value.scores
    except Exception as exc:
        return actions, exc


def policy(retries: int = 3) -> _retry.RetryPolicy:
    return _retry.RetryPolicy(max_retries=retries, backoff=0.1, max_wait=1.0)


def test_flow_success_first_time() -> None:
    actions, result = drive(_retry.request_flow(_urls.Replicas(["http://a"]), policy(), 1), [OK])
    assert actions == [_retry.Send("http://a")] and result == [0.25]


def test_flow_connect_error_fails_over_without_sleeping_or_using_a_retry() -> None:
    replicas = _urls.Replicas(["http://a", "http://b"])
    refused = httpx.ConnectError("refused", request=REQUEST)
    actions, result = drive(_retry.request_flow(replicas, policy(retries=0), 1), [refused, OK])
    assert actions == [_retry.Send("http://a"), _retry.Send("http://b")] and result == [0.25]
    # "a" now sits out: the next sub-requests go straight to "b".
    for _ in range(2):
        actions, _ = drive(_retry.request_flow(replicas, policy(), 1), [OK])
        assert actions == [_retry.Send("http://b")]


def test_flow_retries_transient_status_with_backoff_then_raises() -> None:
    busy = _retry.Reply(503, b'{"error": {"message": "busy"}}')
    actions, error = drive(
        _retry.request_flow(_urls.Replicas(["http://a"]), policy(retries=2), 1), [busy] * 3
    )
    assert [type(a).__name__ for a in actions] == ["Send", "Sleep", "Send", "Sleep", "Send"]
    assert 0.05 <= actions[1].seconds <= 0.1 and 0.1 <= actions[3].seconds <= 0.2
    assert isinstance(error, APIStatusError) and error.status_code == 503 and "after 3 attempts" in str(error)


def test_flow_honours_retry_after_and_refuses_a_too_long_one() -> None:
    slow = _retry.Reply(429, b"{}", retry_after="0.7")
    actions, result = drive(_retry.request_flow(_urls.Replicas(["http://a"]), policy(), 1), [slow, OK])
    assert actions[1] == _retry.Sleep(0.7) and result == [0.25]
    too_slow = _retry.Reply(429, b"{}", retry_after="60")
    actions, error = drive(_retry.request_flow(_urls.Replicas(["http://a"]), policy(), 1), [too_slow])
    assert len(actions) == 1 and isinstance(error, APIStatusError) and "retry after 60 s" in str(error)


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422, 500])
def test_flow_does_not_retry_other_statuses(status: int) -> None:
    actions, error = drive(
        _retry.request_flow(_urls.Replicas(["http://a"]), policy(), 1), [_retry.Reply(status, b"no")]
    )
    assert len(actions) == 1 and isinstance(error, APIStatusError) and error.status_code == status


def test_flow_timeouts_raise_at_once_and_dropped_connections_retry() -> None:
    timeout = httpx.ReadTimeout("slow", request=REQUEST)
    actions, error = drive(_retry.request_flow(_urls.Replicas(["http://a"]), policy(), 1), [timeout])
    assert len(actions) == 1 and isinstance(error, RemoteTimeoutError) and error.__cause__ is timeout
    dropped = httpx.RemoteProtocolError("Server disconnected without sending a response.", request=REQUEST)
    actions, result = drive(_retry.request_flow(_urls.Replicas(["http://a"]), policy(), 1), [dropped, OK])
    assert result == [0.25] and isinstance(actions[1], _retry.Sleep)


def test_flow_all_replicas_refuse() -> None:
    refused = httpx.ConnectError("refused", request=REQUEST)
    replicas = _urls.Replicas(["http://a", "http://b"])
    actions, error = drive(_retry.request_flow(replicas, policy(retries=1), 1), [refused] * 4)
    sends = [a.url for a in actions if isinstance(a, _retry.Send)]
    assert sorted(sends[:2]) == ["http://a", "http://b"] and len(sends) == 3
    assert isinstance(error, RemoteConnectionError) and "any of http://a, http://b" in str(error)


# -- client-side prompts -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prompt_tokenizer(tiny_model_path: Path) -> PromptTokenizer:
    from transformers import AutoTokenizer

    return PromptTokenizer(AutoTokenizer.from_pretrained(str(tiny_model_path)))


def test_split_prompts_concatenate_to_the_prompt() -> None:
    query_text, texts = split_prompts("q?", ["a", "", "b\n"], DEFAULT_INSTRUCTION)
    for doc, text in zip(["a", "", "b\n"], texts, strict=True):
        assert query_text + text == format_prompt("q?", doc, DEFAULT_INSTRUCTION)
        assert (query_text, text) == split_prompt("q?", doc, DEFAULT_INSTRUCTION)


def test_escape_control_tokens_covers_every_added_token(prompt_tokenizer: PromptTokenizer) -> None:
    tokenizer = prompt_tokenizer.tokenizer
    added = list(tokenizer.get_added_vocab())
    text = "x " + " ".join(added) + " <|not a token|> <b>"
    escaped = escape_control_tokens(text)
    control_ids = set(tokenizer.convert_tokens_to_ids(added))
    assert not control_ids & set(tokenizer(escaped)["input_ids"])
    assert escaped.replace("\u200b", "") == text
    plain = "a < b | c > d <br> |> <|"
    assert escape_control_tokens(plain) is plain


@pytest.mark.parametrize("max_length", [60, 64, 80, 128, 512])
def test_split_pairs_tokenizes_to_encode_pairs(prompt_tokenizer: PromptTokenizer, max_length: int) -> None:
    """What the server tokenizes (query_text + document_text) is exactly what LocalReranker scores."""
    if max_length <= prompt_tokenizer.fixed_length:
        with pytest.raises(InvalidInputError, match="too small"):
            prompt_tokenizer.split_pairs("q", ["d"], DEFAULT_INSTRUCTION, max_length)
        return
    tokenizer = prompt_tokenizer.tokenizer
    docs = ["word " * 300, "unbelievable" * 60, "中文字符" * 100, "😀" * 90, "a", "", "tail.\n\n"]
    for query in ["what?", "a long query " * 30]:
        query_text, texts = prompt_tokenizer.split_pairs(query, docs, DEFAULT_INSTRUCTION, max_length)
        expected = prompt_tokenizer.encode_pairs(query, docs, DEFAULT_INSTRUCTION, max_length)
        for text, ids in zip(texts, expected, strict=True):
            assert tokenizer(query_text + text)["input_ids"] == ids


def test_truncate_documents_for_the_server_template(prompt_tokenizer: PromptTokenizer) -> None:
    tokenizer = prompt_tokenizer.tokenizer
    docs = ["word " * 300, "short", ""]
    cut = prompt_tokenizer.truncate_documents("what?", docs, DEFAULT_INSTRUCTION, 100)
    assert cut[1:] == ["short", ""] and docs[0].startswith(cut[0]) and len(cut[0]) < len(docs[0])
    expected = prompt_tokenizer.encode_pairs("what?", docs, DEFAULT_INSTRUCTION, 100)
    for doc, ids in zip(cut, expected, strict=True):
        assert tokenizer(format_prompt("what?", doc, DEFAULT_INSTRUCTION))["input_ids"] == ids
    with pytest.raises(InvalidInputError, match="no document text fits"):
        prompt_tokenizer.truncate_documents("long " * 100, docs, DEFAULT_INSTRUCTION, 100)


# -- secrets, caps, deadlines and dialects, as pure functions ---------------------------------------
def test_redactor_hides_every_fragment_of_six_or_more() -> None:
    redact = Redactor(["sk-0123456789"])
    assert redact("key sk-0123456789 and sk-01 and 456789!") == "key *** and sk-01 and ***!"
    assert redact("nothing here") == "nothing here"
    assert Redactor(["pw"])("a pw b") == "a *** b"  # a secret shorter than 6 is hidden whole
    assert not Redactor([]) and Redactor([])("sk-0123456789") == "sk-0123456789"


def test_split_userinfo_moves_credentials_to_basic_auth() -> None:
    url, auth, secrets = split_userinfo("http://al%40ice:p%3Ass@h:1/v1")
    assert url == "http://h:1/v1" and auth == "Basic " + base64.b64encode(b"al@ice:p:ss").decode()
    assert secrets == ["p:ss", auth.removeprefix("Basic ")]
    assert split_userinfo("http://h:1") == ("http://h:1", None, [])


@pytest.mark.parametrize("key", ["a\nb", "ké", "a b", "\x7f"])
def test_check_api_key_refuses_what_a_header_cannot_carry(key: str) -> None:
    with pytest.raises(InvalidInputError, match="position") as info:
        check_api_key(key)
    assert key not in str(info.value)
    assert check_api_key("") is None and check_api_key("sk-ok_1.2") == "sk-ok_1.2"


def test_body_reader_stops_a_gzip_bomb_at_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (50 << 20))
    reader = _replies.BodyReader(1 << 20, "gzip", "http://h")
    with pytest.raises(MalformedResponseError, match="larger than 1,048,576 bytes"):
        for i in range(0, len(bomb), 4096):
            reader.feed(bomb[i : i + 4096])
    small = _replies.BodyReader(100, "gzip", "http://h")
    small.feed(gzip.compress(b'{"results": []}'))
    assert small.content() == b'{"results": []}'
    with pytest.raises(MalformedResponseError, match="'br'"):
        _replies.BodyReader(100, "br", "http://h")


def test_deep_json_is_malformed() -> None:
    with pytest.raises(MalformedResponseError, match="nested too deeply"):
        _replies.parse_scores(b"[" * 100_000 + b"]" * 100_000, 1, "http://h")


def test_flow_stops_at_the_deadline_instead_of_sleeping_past_it() -> None:
    now = [0.0]
    flow = _retry.request_flow(
        _urls.Replicas(["http://a"]), policy(retries=9), 1, budget=5.0, deadline_at=0.3, clock=lambda: now[0]
    )
    actions: list[Any] = []
    with pytest.raises(RemoteTimeoutError, match="deadline") as info:
        action = next(flow)
        while True:
            actions.append(action)
            if isinstance(action, _retry.Sleep):
                now[0] += action.seconds  # the driver sleeps: time passes
                action = flow.send(None)
            else:
                action = flow.send(_retry.Reply(503, b"{}"))
    assert actions[0] == _retry.Send("http://a", 0.3)  # the attempt gets what is left, not all 5 s
    assert all(a.budget <= 0.3 - t for a, t in zip(actions[2::2], _elapsed(actions), strict=False))
    assert isinstance(info.value.__cause__, APIStatusError)
    assert now[0] < 0.3  # it never slept past the deadline


def _elapsed(actions: list[Any]) -> list[float]:
    """Time slept before each Send after the first."""
    total, out = 0.0, []
    for action in actions[1:]:
        if isinstance(action, _retry.Sleep):
            total += action.seconds
            out.append(total)
    return out


def test_flow_does_not_retry_a_broken_body_or_a_slow_attempt() -> None:
    broken = _retry.BodyBroken(200, 17, httpx.ReadError("reset", request=REQUEST))
    actions, error = drive(_retry.request_flow(_urls.Replicas(["http://a"]), policy(), 1), [broken])
    assert len(actions) == 1 and isinstance(error, MalformedResponseError) and "after 17 bytes" in str(error)
    actions, error = drive(
        _retry.request_flow(_urls.Replicas(["http://a"]), policy(), 1), [_retry.AttemptTimeout(2)]
    )
    assert (
        len(actions) == 1
        and isinstance(error, RemoteTimeoutError)
        and "2 s for the whole attempt" in str(error)
    )


@pytest.mark.parametrize(
    ("base", "api", "expected"),
    [
        ("http://h", "cohere", "http://h/v2/rerank"),
        ("http://h/v1", "sglang", "http://h/v1/rerank"),
        ("http://h/rerank/", "cohere", "http://h/rerank"),
        ("http://h/v2/rerank", "vllm", "http://h/v2/rerank"),
    ],
)
def test_rerank_url_per_dialect(base: str, api: str, expected: str) -> None:
    assert _urls.rerank_url(base, DIALECTS[api]) == expected


def test_each_dialect_parses_its_shape_and_usage() -> None:
    sglang = json.dumps(
        [{"index": 1, "score": 0.2, "meta_info": {"prompt_tokens": 5}}, {"index": 0, "score": 0.9}]
    )
    parsed = _replies.parse_scores(sglang.encode(), 2, "http://h", dialect=DIALECTS["sglang"])
    assert parsed.scores == [0.9, 0.2] and parsed.usage == Usage(5, 5)
    cohere = {"results": [{"index": 0, "relevance_score": 0.4}], "meta": {"tokens": {"input_tokens": 9}}}
    parsed = _replies.parse_scores(json.dumps(cohere).encode(), 1, "http://h", dialect=DIALECTS["cohere"])
    assert parsed.scores == [0.4] and parsed.usage == Usage(9, 9)
    legacy = {"results": [{"index": 0, "relevance_score": 0.4}], "usage": {"total_tokens": 7}}
    assert _replies.parse_scores(json.dumps(legacy).encode(), 1, "http://h").usage == Usage(7, 7)
    assert Usage(1, None) + Usage(2, 3) == Usage(3, 3) and Usage() + Usage() == Usage()
