"""LocalReranker on a -seq-cls checkpoint (Qwen3ForSequenceClassification, one logit) converted from ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

from qwen_rerank import InvalidInputError, LocalReranker, ModelLoadError
from qwen_rerank.testing.seq_cls import convert_to_seq_cls
from tests.helpers import max_diff
from tests.reference import CARD_INSTRUCTION, CARD_PREFIX, CARD_SUFFIX

QUERY = "What is the capital of China?"
DOCUMENTS = [
    "The capital of China is Beijing.",
    "Gravity is a force that attracts two bodies towards each other. " * 12,
    "北京是中华人民共和国的首都，也是全国的政治、文化中心。",
    "Emoji soup 🐼🎋🇨🇳 and a café in São Paulo.",
    "",
    "混合 mixed 文本 text with 数字 12345 and punctuation!?",
]
INSTRUCTION = "Given a question in Chinese or English, find the passage that answers it"


@pytest.fixture(scope="module")
def seq_cls_path(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_to_seq_cls(tiny_model_path, tmp_path_factory.mktemp("seq-cls") / "tiny-seq-cls")


@pytest.fixture(scope="module")
def seq_cls_reranker(seq_cls_path: Path) -> LocalReranker:
    return LocalReranker(seq_cls_path, device="cpu")


@pytest.fixture(scope="module")
def untied_path(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a vocabulary head of its own, not tied to its embeddings (as in larger models)."""
    out = tmp_path_factory.mktemp("untied")
    tied = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_path)
    config = tied.config
    config.tie_word_embeddings = False
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        untied = transformers.Qwen3ForCausalLM(config)
    untied.model.load_state_dict(tied.model.state_dict())
    untied.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        (out / name).write_bytes((tiny_model_path / name).read_bytes())
    return out


def test_scores_equal_the_causal_checkpoints(
    seq_cls_reranker: LocalReranker, tiny_reranker: LocalReranker
) -> None:
    ours = seq_cls_reranker.score(QUERY, DOCUMENTS)
    assert max_diff(ours, tiny_reranker.score(QUERY, DOCUMENTS)) < 1e-5
    assert max(ours) - min(ours) > 0.01  # the random model tells documents apart


def test_an_untied_head_converts_and_scores_the_same(untied_path: Path, tmp_path: Path) -> None:
    """A head of its own is not in the -seq-cls folder: loaded as a causal LM, it would score with another."""
    causal = LocalReranker(untied_path, device="cpu")
    seq_cls = LocalReranker(convert_to_seq_cls(untied_path, tmp_path / "seq-cls"), device="cpu")
    for instruction in (None, INSTRUCTION):
        ours = seq_cls.score(QUERY, DOCUMENTS, instruction=instruction)
        assert max_diff(ours, causal.score(QUERY, DOCUMENTS, instruction=instruction)) < 1e-5


def test_scores_are_the_sigmoid_of_the_classifiers_own_logit(
    seq_cls_reranker: LocalReranker, seq_cls_path: Path
) -> None:
    """The oracle: transformers' Qwen3ForSequenceClassification on each whole prompt, alone."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(seq_cls_path)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(seq_cls_path).eval()
    expected = []
    for document in DOCUMENTS:
        prompt = f"{CARD_PREFIX}<Instruct>: {CARD_INSTRUCTION}\n<Query>: {QUERY}\n<Document>: {document}"
        ids = tokenizer.encode(prompt + CARD_SUFFIX, add_special_tokens=False)
        with torch.inference_mode():
            logit = model(input_ids=torch.tensor([ids])).logits[0, 0]
        expected.append(torch.sigmoid(logit).item())
    assert max_diff(seq_cls_reranker.score(QUERY, DOCUMENTS), expected) < 1e-5


def test_truncation_batching_and_prefix_reuse_match_too(seq_cls_path: Path, tiny_model_path: Path) -> None:
    documents = [f"Document {i}: " + "the panda eats bamboo " * (4 * i) for i in range(8)]
    settings = {"device": "cpu", "max_length": 96, "max_batch_tokens": 256}
    seq_cls = LocalReranker(seq_cls_path, **settings)
    causal = LocalReranker(tiny_model_path, **settings)
    assert max_diff(seq_cls.score(QUERY, documents), causal.score(QUERY, documents)) < 1e-5
    results = seq_cls.rerank(QUERY, documents)
    assert sorted(r.index for r in results) == list(range(len(documents)))
    assert any(r.truncated for r in results)


def test_the_converted_folder_reads_the_same_in_older_readers(
    tiny_model_path: Path, seq_cls_path: Path
) -> None:
    config = json.loads((seq_cls_path / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["Qwen3ForSequenceClassification"]
    assert len(config["id2label"]) == 1
    # transformers 4 (Infinity) and TEI read rope_theta at the top level, else take 10,000.
    assert config["rope_theta"] == config["rope_parameters"]["rope_theta"] == 1_000_000.0
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_path)
    assert (
        config["pad_token_id"] == tokenizer.pad_token_id == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    )
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        assert (seq_cls_path / name).read_bytes() == (tiny_model_path / name).read_bytes()
    model = transformers.AutoModelForSequenceClassification.from_pretrained(seq_cls_path)
    assert model.score.weight.shape == (1, config["hidden_size"])


def test_the_classifier_row_is_yes_minus_no(tiny_model_path: Path, seq_cls_path: Path) -> None:
    causal = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model_path)
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    head = causal.get_output_embeddings().weight
    row = transformers.AutoModelForSequenceClassification.from_pretrained(seq_cls_path).score.weight[0]
    assert torch.allclose(row, head[yes] - head[no], atol=1e-7)


def test_a_classifier_with_two_labels_is_refused_with_the_fix(seq_cls_path: Path, tmp_path: Path) -> None:
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        seq_cls_path, num_labels=2, ignore_mismatched_sizes=True
    )
    model.save_pretrained(tmp_path)
    for item in seq_cls_path.iterdir():
        if item.name.startswith(("tokenizer", "vocab", "merges")):
            (tmp_path / item.name).write_bytes(item.read_bytes())
    with pytest.raises(ModelLoadError, match=r"2 labels.*convert_to_seq_cls"):
        LocalReranker(tmp_path, device="cpu")


def test_convert_refuses_a_missing_source_and_writing_over_it(tiny_model_path: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="local checkpoint folder"):
        convert_to_seq_cls(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(InvalidInputError, match="must differ from src"):
        convert_to_seq_cls(tiny_model_path, tiny_model_path)
    with pytest.raises(ModelLoadError, match="as a causal-LM reranker"):
        convert_to_seq_cls(tmp_path, tmp_path / "out")
