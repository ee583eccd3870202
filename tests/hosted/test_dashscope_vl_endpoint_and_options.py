"""Where RemoteReranker(model="qwen3-vl-rerank") sends, and the options a hosted multimodal model takes."""

from __future__ import annotations

import pytest

from qwen_rerank import InvalidInputError, RemoteReranker
from qwen_rerank.media import DEFAULT_VL_INSTRUCTION
from qwen_rerank.prompt import DEFAULT_INSTRUCTION

BEIJING, SINGAPORE = "https://dashscope.aliyuncs.com", "https://dashscope-intl.aliyuncs.com"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-endpoint-test")


def test_the_vl_model_defaults_to_beijing_the_only_region_that_lists_it() -> None:
    with RemoteReranker(api="dashscope", model="qwen3-vl-rerank") as vl:
        assert vl.base_urls == [BEIJING]
    with RemoteReranker(api="dashscope") as text:
        assert text.base_urls == [SINGAPORE]  # qwen3-rerank keeps its default
    with RemoteReranker(api="dashscope", model="qwen3-vl-rerank", region="singapore") as chosen:
        assert chosen.base_urls == [SINGAPORE]
    with RemoteReranker("https://proxy.example", api="dashscope", model="qwen3-vl-rerank") as proxied:
        assert proxied.base_urls == ["https://proxy.example"]


def test_the_vl_model_is_multimodal_with_or_without_the_flag() -> None:
    for flag in (False, True):
        with RemoteReranker(api="dashscope", model="qwen3-vl-rerank", multimodal=flag) as vl:
            assert vl.multimodal and vl.instruction == DEFAULT_VL_INSTRUCTION and vl.template == "server"
    with RemoteReranker(api="dashscope", model="qwen3-vl-rerank", instruction="Mine.") as mine:
        assert mine.instruction == "Mine."


def test_multimodal_with_a_text_model_names_the_vl_model() -> None:
    with pytest.raises(
        InvalidInputError, match="model='qwen3-rerank' reads text only: pass model='qwen3-vl-rerank'"
    ):
        RemoteReranker(api="dashscope", multimodal=True)
    with pytest.raises(InvalidInputError, match="api='dashscope' with model='qwen3-vl-rerank'"):
        RemoteReranker(api="siliconflow", api_key="sk", multimodal=True)


def test_a_text_model_refuses_an_image_and_keeps_its_instruction() -> None:
    with RemoteReranker(api="dashscope") as text:
        assert not text.multimodal and text.instruction == DEFAULT_INSTRUCTION
        with pytest.raises(InvalidInputError, match=r"documents\[0\].*text only"):
            text.score("q", [{"image": "https://img.example/a.png"}])


def test_template_client_is_refused_for_the_hosted_vl_model() -> None:
    with pytest.raises(InvalidInputError, match="template='client' would wrap each prompt twice"):
        RemoteReranker(api="dashscope", model="qwen3-vl-rerank", template="client")
