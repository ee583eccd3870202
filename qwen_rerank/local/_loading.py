"""Finding and loading a checkpoint: where it comes from, its tokenizer and its causal LM.

Loading is kept apart from scoring (``_scorer.py``): a checkpoint of another
kind needs only a loader of its own here.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from qwen_rerank.exceptions import InvalidInputError, ModelLoadError
from qwen_rerank.prompt import PromptTokenizer

__all__ = [
    "Source",
    "check_model_source",
    "find_source",
    "load_errors",
    "load_scoring_model",
    "load_tokenizer",
    "quiet_progress_bars",
]

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_HUB_PROBE_SECONDS = 3.0
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def check_model_source(model: str | os.PathLike[str], revision: str | None = None) -> tuple[str, bool]:
    """Where ``model`` loads from: ``(folder or hub id, local_files_only)``; a plain error if nowhere.

    A URL, a folder that does not exist or holds no checkpoint, and a hub id
    that cannot be fetched (offline, or the hub unreachable within a few
    seconds, and not in the local cache) each raise with the fix. A cached hub
    id loads from the cache when the hub cannot be reached.
    """
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if not isinstance(model, str) or not model.strip():
        raise InvalidInputError(f"model must be a hub id or a local folder, got {model!r}.")
    if model.startswith(("http://", "https://")):
        raise InvalidInputError(
            f"model={model!r} is a URL, not a model. To score with a vLLM server there, pass it as "
            "base_url= (create_reranker(base_url=URL) or VLLMReranker(URL)), "
            "or --base-url on the command line."
        )
    folder = Path(model).expanduser()
    if folder.is_dir():
        _check_model_folder(folder)
        return str(folder), True
    if folder.exists():
        raise ModelLoadError(f"{model!r} is a file; pass the folder that holds the checkpoint.")
    if not _HUB_ID.fullmatch(model) or model.startswith("."):
        raise ModelLoadError(
            f"No such folder: {model!r}. Pass an existing checkpoint folder, or a hub id such as "
            "'Qwen/Qwen3-Reranker-0.6B'."
        ) from FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), model)
    return model, _hub_offline_check(model, revision)


def _check_model_folder(folder: Path) -> None:
    names = {item.name for item in folder.iterdir()}
    missing = []
    if "config.json" not in names:
        missing.append("config.json")
    if not names.intersection(_WEIGHT_FILES) and not any(n.endswith(".safetensors") for n in names):
        missing.append("model weights (model.safetensors or pytorch_model.bin)")
    if "tokenizer.json" not in names and not {"vocab.json", "merges.txt"} <= names:
        missing.append("tokenizer files (tokenizer.json, or vocab.json and merges.txt)")
    if missing:
        raise ModelLoadError(
            f"{str(folder)!r} is not a model checkpoint: it has no {', no '.join(missing)}. Pass the folder "
            "that save_pretrained() or `hf download Qwen/Qwen3-Reranker-0.6B --local-dir DIR` wrote."
        )


def _hub_offline_check(model: str, revision: str | None) -> bool:
    """True to load ``model`` from the local cache only; raises when neither cache nor hub can serve it."""
    from huggingface_hub import constants, try_to_load_from_cache

    cached = isinstance(try_to_load_from_cache(model, "config.json", revision=revision), str)
    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if offline:
        reason = "HF_HUB_OFFLINE is set"
    else:
        endpoint = os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")
        try:
            httpx.head(endpoint, timeout=_HUB_PROBE_SECONDS, trust_env=True)
            return False
        except httpx.HTTPError as exc:
            reason = f"{endpoint} cannot be reached ({type(exc).__name__})"
    if cached:
        return True
    raise ModelLoadError(
        f"Cannot download {model!r}: {reason}, and it is not in the local Hugging Face cache. Pass a "
        "local checkpoint folder (download it once where the hub is reachable, e.g. `hf download "
        f"{model} --local-dir DIR`), or, for tests, the tiny model of "
        "qwen_rerank.testing.make_tiny_reranker()."
    )


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Hide transformers' and the hub's progress bars inside the block, then restore them as they were.

    Logging levels and handlers are left alone.
    """
    hub_utils: Any = importlib.import_module("huggingface_hub.utils")
    tlog: Any = importlib.import_module("transformers.utils.logging")
    if not tlog.is_progress_bar_enabled():
        yield
        return
    hub_was_disabled = hub_utils.are_progress_bars_disabled()
    tlog.disable_progress_bar()
    try:
        yield
    finally:
        tlog.enable_progress_bar()
        if hub_was_disabled:
            hub_utils.disable_progress_bars()


@dataclass(frozen=True)
class Source:
    """Where a checkpoint loads from, and how: the arguments every transformers loader takes."""

    model: str
    """The model as the user named it (for messages)."""
    location: str
    """A local folder or a hub id."""
    local_only: bool
    revision: str | None = None
    trust_remote_code: bool = False

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for transformers' ``from_pretrained``."""
        return {
            "trust_remote_code": self.trust_remote_code,
            "revision": self.revision,
            "local_files_only": self.local_only,
        }


def find_source(
    model: str | os.PathLike[str], revision: str | None = None, trust_remote_code: bool = False
) -> Source:
    """``check_model_source`` as a [`Source`][qwen_rerank.local._loading.Source]."""
    location, local_only = check_model_source(model, revision)
    return Source(os.fspath(model), location, local_only, revision, trust_remote_code)


@contextlib.contextmanager
def load_errors(source: Source) -> Iterator[None]:
    """Translate any error raised while loading ``source`` into ``ModelLoadError``, with the fix."""
    try:
        with quiet_progress_bars():
            yield
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load model {source.model!r}: {exc}. Pass a local checkpoint folder or a hub id "
            "that this machine can download."
        ) from exc


def load_tokenizer(source: Source) -> PromptTokenizer:
    """The checkpoint's tokenizer, as the [`PromptTokenizer`][qwen_rerank.prompt.PromptTokenizer] of prompts.

    A checkpoint with a ``tokenizer.json`` (every Qwen3-Reranker) is read
    with the ``tokenizers`` library alone: transformers' tokenizer classes,
    slow to import and to build, are used only for other checkpoints or with
    ``trust_remote_code``.
    """
    with load_errors(source):
        path = None if source.trust_remote_code else _tokenizer_file(source)
        if path is not None:
            return PromptTokenizer(path)
        import transformers

        return PromptTokenizer(transformers.AutoTokenizer.from_pretrained(source.location, **source.kwargs()))


def _tokenizer_file(source: Source) -> Path | None:
    """The checkpoint's ``tokenizer.json`` on disk (downloaded if need be), or ``None`` if it has none."""
    folder = Path(source.location)
    if folder.is_dir():
        path = folder / "tokenizer.json"
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(
            hf_hub_download(
                source.location,
                "tokenizer.json",
                revision=source.revision,
                local_files_only=source.local_only,
            )
        )
    except EntryNotFoundError:
        return None


def load_scoring_model(source: Source, dtype: Any) -> tuple[Any, tuple[int, int] | None]:
    """The checkpoint as a causal LM in ``dtype``, and its head's (no, yes) rows if not the tokenizer's.

    A causal-LM checkpoint loads as it is; a one-logit ``-seq-cls`` one as a
    causal LM with a two-row head (see ``_seq_cls.load_scoring_model``).
    """
    from qwen_rerank.local._seq_cls import load_scoring_model as load

    with load_errors(source):
        return load(source.location, dtype=dtype, **source.kwargs())
