"""Loading either kind of Qwen3-Reranker checkpoint: the causal LM, or its one-logit ``-seq-cls`` form.

A ``-seq-cls`` checkpoint (``Qwen3ForSequenceClassification`` with one label,
as TEI, Infinity and sentence-transformers serve it) scores a prompt with
``sigmoid(z)``, where ``z = w . h`` is its classifier row ``w`` (the causal
LM's ``yes`` row minus its ``no`` row) applied to the last token's hidden
state ``h``. Since ``sigmoid(z) = softmax([0, z])[1]``, such a checkpoint is
loaded as the causal LM of the same architecture whose output head has two
rows, ``[0, w]``: the scorer then computes exactly what it computes for the
causal checkpoint's cut ``[no, yes]`` head, with the same prompts, batching
and prefix reuse.
"""

from __future__ import annotations

from typing import Any

import torch
import transformers

from qwen_rerank.exceptions import ModelLoadError

__all__ = ["SEQ_CLS_ROWS", "is_seq_cls", "load_scoring_model"]

SEQ_CLS_ROWS = (0, 1)
"""The (no, yes) rows of the two-row head a ``-seq-cls`` checkpoint is given."""


def is_seq_cls(config: Any) -> bool:
    """Whether ``config`` describes a sequence-classification checkpoint (by its ``architectures``)."""
    names = getattr(config, "architectures", None) or []
    return any(name.endswith("ForSequenceClassification") for name in names)


def load_scoring_model(source: str, **kwargs: Any) -> tuple[torch.nn.Module, tuple[int, int] | None]:
    """The checkpoint at ``source`` as a causal LM, and the (no, yes) rows of its head if not the tokenizer's.

    ``kwargs`` go to transformers' ``from_pretrained`` (``dtype``, ``revision``,
    ``trust_remote_code``, ``local_files_only``). A causal-LM checkpoint loads
    as it is, with ``None`` for rows (the tokenizer's ``no`` and ``yes`` ids
    apply); a one-label ``-seq-cls`` checkpoint loads as described in this
    module's docstring, with ``SEQ_CLS_ROWS``.

    Raises:
        ModelLoadError: A sequence classifier with other than one label, or without some of its
            weights (its classifier row ``score.weight``, say), which transformers would make up.
    """
    config_kwargs = {k: v for k, v in kwargs.items() if k != "dtype"}
    config = transformers.AutoConfig.from_pretrained(source, **config_kwargs)
    if not is_seq_cls(config):
        model: torch.nn.Module = transformers.AutoModelForCausalLM.from_pretrained(source, **kwargs)
        return model, None
    if getattr(config, "num_labels", None) != 1:
        raise ModelLoadError(
            f"{source!r} is a sequence classifier with {config.num_labels} labels; a -seq-cls reranker has "
            "one (its logit is logit_yes - logit_no). Pass the causal-LM checkpoint, or one converted with "
            "qwen_rerank.testing.seq_cls.convert_to_seq_cls."
        )
    classifier, info = transformers.AutoModelForSequenceClassification.from_pretrained(
        source, output_loading_info=True, **kwargs
    )
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        # transformers fills them with random values: scores would be wrong, and differ on each load.
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ModelLoadError(
            f"{source!r} is a -seq-cls checkpoint without the weights {shown}; loading it would score "
            "with random ones. Convert the checkpoint again (qwen_rerank.testing.seq_cls."
            "convert_to_seq_cls keeps the classifier row score.weight), or pass the causal-LM checkpoint."
        )
    return _as_causal_lm(classifier), SEQ_CLS_ROWS


def _as_causal_lm(classifier: Any) -> torch.nn.Module:
    """The causal LM of ``classifier``'s architecture, on its transformer, with head rows ``[0, w]``."""
    row = classifier.score.weight
    with torch.device("meta"):  # only the shell: its transformer and head are replaced below
        causal: Any = transformers.AutoModelForCausalLM.from_config(classifier.config)  # type: ignore[no-untyped-call]
    setattr(causal, causal.base_model_prefix, classifier.base_model)
    head = torch.nn.Linear(row.shape[1], 2, bias=False, device=row.device, dtype=row.dtype)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[SEQ_CLS_ROWS[1]].copy_(row[0])
    causal.set_output_embeddings(head)
    model: torch.nn.Module = causal
    return model
