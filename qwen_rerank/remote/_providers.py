"""The hosted Qwen3-Reranker APIs, as their public API references describe them: pure data.

One [`Provider`][qwen_rerank.remote._providers.Provider] row per provider (where it
listens, which key it reads, where the instruction goes, how it orders its results),
and one [`HostedModel`][qwen_rerank.remote._providers.HostedModel] row per provider
and model (how much one request may hold). Each row names the references it was read
from; a limit a reference does not give is ``None`` and its row says so, so no number
here is a guess presented as a fact.

============  ====================================  ===================  =====================
provider      request                               instruction          results
============  ====================================  ===================  =====================
dashscope     ``{model, input: {query, documents},  ``parameters.        ``output.results``,
              parameters: {top_n, return_documents,  instruct``          sorted by score
              instruct, fps?}}``; qwen3-vl-rerank:
              each document ``{text?, image?,
              video?}``
siliconflow   ``{model, query, documents, top_n,    ``instruction``      ``results``, sorted
              return_documents, instruction}``                           by score
deepinfra     ``{queries, documents, instruction}``  ``instruction``     ``scores``, in input
              (one query per document)              (advertised; its     order
                                                    effect unverified)
============  ====================================  ===================  =====================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "DEFAULT_DASHSCOPE_INSTRUCTION",
    "MODELS",
    "PROVIDERS",
    "HostedApiName",
    "HostedMedia",
    "HostedModel",
    "Provider",
    "RequestCount",
    "find_model",
]

HostedApiName = Literal["dashscope", "siliconflow", "deepinfra"]
"""The hosted providers, as ``RemoteReranker(api=...)`` takes them."""

RequestCount = Literal["query_per_document"]
"""How a provider counts the tokens of one request.

``"query_per_document"``: query tokens x number of documents + the tokens of every
document (DashScope's formula: the query is scored once per document).
"""

# DashScope applies this when a request has no ``parameters.instruct`` (a third-party copy of
# its reference; the official page was not readable in full). It ends with a period, which the
# Qwen3 default instruction does not: the client always sends the instruction it means.
DEFAULT_DASHSCOPE_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query."


@dataclass(frozen=True)
class Provider:
    """How one hosted provider is reached, and what its wire format holds."""

    name: HostedApiName
    title: str
    key_env: str  # the environment variable its own docs and SDKs read the key from
    default_model: str  # the model sent when none is given
    default_base_url: str
    regions: Mapping[str, str]  # region -> base URL; keys are per region (another region: 401)
    path: str  # appended to the base URL; "{model}" is replaced by the model name
    instruction_field: str | None  # dotted path in the body; None: the provider takes none
    instruction_documented: bool  # False: the field is accepted, but no reference says it is applied
    empty_instruction_ok: bool  # False: the reference requires a non-empty instruction
    result_order: Literal["by_score", "input"]
    default_concurrency: int  # our default: well below the documented rate limits
    rate_limits: str  # as documented; 429 carries no documented Retry-After at any of them
    sources: tuple[str, ...] = field(default=(), repr=False)
    key_env_alt: str | None = None  # read when key_env is unset: another spelling its docs use


@dataclass(frozen=True)
class HostedMedia:
    """What a hosted multimodal model takes beside text, as its reference lists it.

    Each query and document is one object with ``text``, ``image`` and ``video`` keys
    (DashScope's element form): one image and one video at most per object.
    """

    max_image_documents: int  # documents holding an image, per request
    max_video_documents: int  # documents holding a video, per request
    image_formats: tuple[str, ...]  # the types of data URLs sent (image/<format>); a URL goes as it is
    video_by_url_only: bool  # True: a video goes by http(s) URL, never as a file or frames
    fps: float | None  # ``parameters.fps`` sent with a request holding a video; None: none sent


@dataclass(frozen=True)
class HostedModel:
    """How much one request to a hosted model may hold; ``None``: no reference gives the limit."""

    provider: HostedApiName
    model: str
    max_documents_per_request: int | None
    max_tokens_per_item: int | None  # per query and per document, counted apart
    over_item: Literal["truncates", "unknown"]  # what the provider does past max_tokens_per_item
    max_tokens_per_pair: int | None  # one scored prompt (the model's context length)
    max_tokens_per_request: int | None
    request_count: RequestCount | None  # how max_tokens_per_request is counted
    sources: tuple[str, ...] = field(default=(), repr=False)
    media: HostedMedia | None = None  # None: the model reads text only
    region: str | None = None  # the only region that lists the model: its default endpoint
    rate_limits: str | None = None  # as documented, where the model has its own


_DASHSCOPE_API = "https://www.alibabacloud.com/help/en/model-studio/text-rerank-api"
_DASHSCOPE_API_CN = "https://help.aliyun.com/zh/model-studio/text-rerank-api"
_DASHSCOPE_MODEL = "https://www.alibabacloud.com/help/en/model-studio/qwen3-rerank"
_DASHSCOPE_VL_MODEL = "https://help.aliyun.com/zh/model-studio/qwen3-vl-rerank"
_DASHSCOPE_SDK = "github.com/dashscope/dashscope-sdk-python: dashscope/rerank/text_rerank.py"
_SILICONFLOW_API = "https://docs.siliconflow.com/en/api-reference/rerank/create-rerank"
_SILICONFLOW_API_CN = "https://docs.siliconflow.cn/en/api-reference/rerank/create-rerank"
_SILICONFLOW_LIMITS = "https://docs.siliconflow.com/en/userguide/rate-limits/rate-limit-and-upgradation"
_DEEPINFRA_API = "https://deepinfra.com/Qwen/Qwen3-Reranker-0.6B/api"
_DEEPINFRA_LIMITS = "https://deepinfra.com/docs/advanced/rate-limits"

PROVIDERS: dict[str, Provider] = {
    "dashscope": Provider(
        "dashscope",
        "Alibaba Cloud Model Studio (DashScope)",
        key_env="DASHSCOPE_API_KEY",
        default_model="qwen3-rerank",
        default_base_url="https://dashscope-intl.aliyuncs.com",
        regions={
            "singapore": "https://dashscope-intl.aliyuncs.com",
            "beijing": "https://dashscope.aliyuncs.com",
            "virginia": "https://dashscope-us.aliyuncs.com",
            "hongkong": "https://cn-hongkong.dashscope.aliyuncs.com",
        },
        path="/api/v1/services/rerank/text-rerank/text-rerank",
        instruction_field="parameters.instruct",
        instruction_documented=True,
        empty_instruction_ok=True,
        result_order="by_score",
        default_concurrency=8,
        rate_limits="qwen3-rerank, Beijing: 5,400 requests and 5,000,000,000 tokens a minute per account "
        "(also enforced per second: RPM/60); 429 Throttling.RateQuota",
        sources=(
            _DASHSCOPE_API,
            _DASHSCOPE_API_CN,
            _DASHSCOPE_SDK,
            "https://www.alibabacloud.com/help/en/model-studio/base-url",
            "https://help.aliyun.com/en/model-studio/error-code-start",
            "https://help.aliyun.com/en/model-studio/rate-limit",
        ),
    ),
    "siliconflow": Provider(
        "siliconflow",
        "SiliconFlow",
        key_env="SILICONFLOW_API_KEY",
        default_model="Qwen/Qwen3-Reranker-0.6B",
        default_base_url="https://api.siliconflow.com",
        regions={"global": "https://api.siliconflow.com", "china": "https://api.siliconflow.cn"},
        path="/v1/rerank",
        instruction_field="instruction",
        instruction_documented=True,
        empty_instruction_ok=False,  # "Length must be >= 1"
        result_order="by_score",
        default_concurrency=4,
        rate_limits="rerankers: 2,000 requests and 500,000 tokens a minute per account and model; 429",
        sources=(_SILICONFLOW_API, _SILICONFLOW_API_CN, _SILICONFLOW_LIMITS),
    ),
    "deepinfra": Provider(
        "deepinfra",
        "DeepInfra",
        key_env="DEEPINFRA_API_KEY",
        default_model="Qwen/Qwen3-Reranker-0.6B",
        default_base_url="https://api.deepinfra.com",
        regions={"us": "https://api.deepinfra.com"},
        path="/v1/inference/{model}",
        instruction_field="instruction",
        instruction_documented=False,
        empty_instruction_ok=True,
        result_order="input",
        default_concurrency=16,
        rate_limits="200 concurrent requests per model and account; 429 'Rate limited'",
        sources=(_DEEPINFRA_API, _DEEPINFRA_LIMITS),
        key_env_alt="DEEPINFRA_TOKEN",  # what DeepInfra's own examples spell
    ),
}


def _siliconflow(size: str) -> HostedModel:
    return HostedModel(
        "siliconflow",
        f"Qwen/Qwen3-Reranker-{size}",
        max_documents_per_request=None,
        max_tokens_per_item=None,
        over_item="unknown",
        max_tokens_per_pair=32768,  # the model's context; the reference gives no request limit
        max_tokens_per_request=None,
        request_count=None,
        sources=(_SILICONFLOW_API, "https://huggingface.co/Qwen/Qwen3-Reranker-0.6B"),
    )


def _deepinfra(size: str) -> HostedModel:
    return HostedModel(
        "deepinfra",
        f"Qwen/Qwen3-Reranker-{size}",
        # Not in the reference: a 1,025-document request is answered 422 "List should have at
        # most 1024 items after validation" (observed by a third party, 2026-08-25).
        max_documents_per_request=1024,
        max_tokens_per_item=None,
        over_item="unknown",
        max_tokens_per_pair=32768,  # the model page's context length
        max_tokens_per_request=None,
        request_count=None,
        sources=(_DEEPINFRA_API,),
    )


MODELS: dict[tuple[str, str], HostedModel] = {
    ("dashscope", "qwen3-rerank"): HostedModel(
        "dashscope",
        "qwen3-rerank",
        max_documents_per_request=500,
        max_tokens_per_item=4000,
        over_item="truncates",  # "Exceeding this limit triggers truncation"
        max_tokens_per_pair=None,
        # 30,000 in Beijing (Chinese reference, and the model page's 30,000-token input); the
        # international reference gives 120,000 for Singapore since February 2026. The smaller
        # holds in every region.
        max_tokens_per_request=30000,
        request_count="query_per_document",
        sources=(_DASHSCOPE_API, _DASHSCOPE_API_CN, _DASHSCOPE_MODEL),
    ),
    ("dashscope", "qwen3-vl-rerank"): HostedModel(
        "dashscope",
        "qwen3-vl-rerank",
        # "Text: 100, Image: 40, Video: 4" (English reference, June 2026): "the limit varies by
        # document type". Read as: at most 100 documents, of which at most 40 hold an image and
        # at most 4 a video (a document holding both counts for both).
        max_documents_per_request=100,
        max_tokens_per_item=8000,
        over_item="truncates",
        max_tokens_per_pair=None,
        # 120,000 (June 2026; the model page's input length too); an older edition said 800,000.
        max_tokens_per_request=120000,
        request_count="query_per_document",
        sources=(_DASHSCOPE_API, _DASHSCOPE_API_CN, _DASHSCOPE_VL_MODEL, _DASHSCOPE_SDK),
        media=HostedMedia(
            max_image_documents=40,
            max_video_documents=4,
            # The reference also lists ICO, DIB, ICNS and SGI; local files are sent in these five,
            # the formats told apart by their first bytes here.
            image_formats=("png", "jpeg", "webp", "bmp", "tiff"),
            video_by_url_only=True,  # MP4, AVI, MOV, by URL only
            fps=1.0,  # the reference's example, and the official model's default
        ),
        region="beijing",  # the only region that lists it; keys are per region
        rate_limits="Beijing: 600 requests and 9,000,000 tokens a minute",
    ),
    **{("siliconflow", f"Qwen/Qwen3-Reranker-{s}"): _siliconflow(s) for s in ("0.6B", "4B", "8B")},
    **{("deepinfra", f"Qwen/Qwen3-Reranker-{s}"): _deepinfra(s) for s in ("0.6B", "4B", "8B")},
}


def find_model(api: str, model: str) -> HostedModel | None:
    """The row of ``model`` at provider ``api``, or ``None`` for a model the table does not know."""
    return MODELS.get((api, model))
