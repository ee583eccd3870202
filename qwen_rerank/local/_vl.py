"""Qwen3-VL-Reranker in this process: text, images and video scored as the official code scores them.

The score of a pair is ``sigmoid((w_yes - w_no) . h)``: ``h`` is the model's
last hidden state at the prompt's last position, ``w_yes`` and ``w_no`` the
rows of "yes" and "no" in the vocabulary head. The prompt, its truncation
(`_vl_prompt`) and the pixels (`_vl_pixels`) follow the official
implementation; this module loads the checkpoint, reads each image (and,
through `_vl_video`, each video file or URL) under `MediaLimits`, and runs the
pairs in left-padded batches whose padded size, image and video tokens
included, stays within a token budget.

It needs no torchvision: the processor is not used, only the tokenizer and
the processor config's patch geometry.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
import transformers

from qwen_rerank._media_io import MediaLimits, open_image
from qwen_rerank.exceptions import ModelLoadError
from qwen_rerank.local._batching import plan_batches
from qwen_rerank.local._loading import Source, load_errors, quiet_progress_bars
from qwen_rerank.local._scorer import raise_out_of_memory, score_halving
from qwen_rerank.local._vl_pixels import (
    PatchGeometry,
    VisionSettings,
    VisualInput,
    frame_indices,
    prepare_frames,
    prepare_image,
)
from qwen_rerank.local._vl_prompt import (
    DEFAULT_VL_INSTRUCTION,
    DEFAULT_VL_MAX_LENGTH,
    ControlIds,
    Piece,
    content_pieces,
    encode_pieces,
    pair_pieces,
    token_types,
    truncate_ids,
)
from qwen_rerank.local._vl_video import read_video
from qwen_rerank.media import MultimodalContent, VideoSource, as_content
from qwen_rerank.prompt import PromptTokenizer

__all__ = ["VLInput", "VLScorer", "find_vl_folder", "is_vl_checkpoint"]

VLInput = str | Mapping[str, Any] | MultimodalContent
"""A query or document: text, or a dict / `MultimodalContent` of text, images and videos."""

Progress = Callable[[list[int]], None]
"""Told, as each batch finishes, the request of each pair it scored (one entry per pair)."""


def is_vl_checkpoint(config: Any) -> bool:
    """Whether a transformers config (or its ``config.json`` as a dict) is a Qwen3-VL checkpoint."""
    if isinstance(config, Mapping):
        model_type, architectures = config.get("model_type"), config.get("architectures") or []
    else:
        model_type, architectures = (
            getattr(config, "model_type", None),
            getattr(config, "architectures", None) or [],
        )
    return model_type == "qwen3_vl" or "Qwen3VLForConditionalGeneration" in architectures


def find_vl_folder(source: Source) -> Path | None:
    """The folder of ``source`` (downloaded if need be) if it is a Qwen3-VL checkpoint, else ``None``."""
    folder = Path(source.location)
    with load_errors(source):
        if not folder.is_dir():
            from huggingface_hub import hf_hub_download, snapshot_download

            config = Path(
                hf_hub_download(
                    source.location,
                    "config.json",
                    revision=source.revision,
                    local_files_only=source.local_only,
                )
            )
            if not is_vl_checkpoint(json.loads(config.read_text(encoding="utf-8"))):
                return None
            return Path(
                snapshot_download(
                    source.location, revision=source.revision, local_files_only=source.local_only
                )
            )
        config = folder / "config.json"
        if not config.is_file():
            return None
        return folder if is_vl_checkpoint(json.loads(config.read_text(encoding="utf-8"))) else None


@dataclass(frozen=True)
class _Content:
    """A query or document made ready: its prompt pieces and its images and videos in prompt order."""

    pieces: list[Piece]
    visuals: list[VisualInput]


class VLScorer:
    """Scores (query, documents) requests with a Qwen3-VL-Reranker checkpoint.

    Args:
        model: A ``Qwen3VLForConditionalGeneration`` in eval mode.
        tokenizer: Its Hugging Face tokenizer.
        geometry: The processor config's patching (`PatchGeometry.from_checkpoint`).
        settings: Pixel bounds and video sampling (the official defaults).
        limits: Limits on reading images, and whether URLs are fetched.
        max_length: Tokens a prompt keeps before its last 5 (the official 10,240).
        max_batch_tokens: The most padded tokens in one forward pass; a longer
            prompt runs alone.
        instruction: The instruction used when a call gives none.

    Not thread-safe: callers serialise calls.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        geometry: PatchGeometry | None = None,
        settings: VisionSettings | None = None,
        limits: MediaLimits | None = None,
        max_length: int = DEFAULT_VL_MAX_LENGTH,
        max_batch_tokens: int = 8192,
        instruction: str = DEFAULT_VL_INSTRUCTION,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.geometry = geometry or PatchGeometry()
        self.settings = settings or VisionSettings()
        self.limits = limits or MediaLimits()
        self.max_length = max_length
        self.max_batch_tokens = max_batch_tokens
        self.instruction = instruction
        self.control = ControlIds.of(tokenizer)
        words = PromptTokenizer(tokenizer)
        self._encode_text = words.encode_text
        self._pad_id = words.pad_id
        head = model.get_output_embeddings().weight
        self._device = head.device
        with torch.no_grad():
            self._direction = (head[words.yes_id] - head[words.no_id]).float()

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **options: Any,
    ) -> VLScorer:
        """Load a Qwen3-VL-Reranker checkpoint folder; `options` go to the constructor."""
        folder = Path(path)
        try:
            with quiet_progress_bars():
                model: Any = transformers.Qwen3VLForConditionalGeneration.from_pretrained(folder, dtype=dtype)
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"Cannot load a Qwen3-VL checkpoint from {str(folder)!r}: {exc}") from exc
        model = model.to(torch.device(device)).eval()
        return cls(model, tokenizer, geometry=PatchGeometry.from_checkpoint(folder), **options)

    def score(
        self, query: VLInput, documents: Sequence[VLInput], instruction: str | None = None
    ) -> list[float]:
        """P(relevant) of each document for `query`, in the documents' order."""
        return self.score_batch([(query, documents)], instruction)[0]

    def score_batch(
        self,
        requests: Sequence[tuple[VLInput, Sequence[VLInput]]],
        instruction: str | None = None,
        progress: Progress | None = None,
    ) -> list[list[float]]:
        """Scores of every request's documents, batched together under the token budget.

        Raises:
            InvalidInputError: A query or document is malformed, or one of its
                images or videos cannot be read within the limits; the message
                names it (``documents[3]'s image[0]``), never its content.
            MissingDependencyError: A video file or URL, without PyAV (the ``video`` extra).
            OutOfMemoryError: The device ran out of memory on one pair alone (a
                batch that runs out is halved and retried first).
        """
        instruction = self.instruction if instruction is None else instruction
        rows: list[list[int]] = []
        visuals: list[list[VisualInput]] = []
        owners: list[tuple[int, int]] = []
        prompts: list[list[Piece]] = []
        for r, (query, documents) in enumerate(requests):
            prefix = f"requests[{r}]'s " if len(requests) > 1 else ""
            ready = self._prepare(query, f"{prefix}query")
            for i, document in enumerate(documents):
                doc = self._prepare(document, f"{prefix}documents[{i}]")
                prompts.append(pair_pieces(instruction, ready.pieces, doc.pieces, self.control))
                visuals.append(ready.visuals + doc.visuals)
                owners.append((r, i))
        for ids in encode_pieces(prompts, self._encode_text):
            rows.append(truncate_ids(ids, self.max_length, self.control.special))
        scores: list[list[float]] = [[0.0] * len(documents) for _, documents in requests]
        for batch, values in self._run(rows, visuals):
            for k, value in zip(batch, values, strict=True):
                r, i = owners[k]
                scores[r][i] = value
            if progress is not None:
                progress([owners[k][0] for k in batch])
        return scores

    def _run(
        self, rows: list[list[int]], visuals: list[list[VisualInput]]
    ) -> Iterator[tuple[list[int], list[float]]]:
        """Each batch of the plan and its scores; a batch out of memory is halved and retried."""

        def forward(part: list[int]) -> list[float]:
            return self._forward([rows[k] for k in part], [visuals[k] for k in part])

        def fail(exc: Exception, k: int) -> NoReturn:
            raise_out_of_memory(
                exc, self._device, f"a document of {len(rows[k])} prompt tokens", self.max_length
            )

        for batch in plan_batches([len(row) for row in rows], self.max_batch_tokens):
            yield batch, score_halving(batch, forward, fail, self._device)

    def _prepare(self, value: Any, where: str) -> _Content:
        content = as_content(value, where=where)
        if isinstance(content, str):
            return _Content(content_pieces([content], [], self.control), [])
        videos = [self._video(video, f"{where}'s video[{k}]") for k, video in enumerate(content.videos)]
        images = [
            prepare_image(
                open_image(image, self.limits, f"{where}'s image[{k}]"),
                self.settings,
                self.geometry,
                f"{where}'s image[{k}]",
            )
            for k, image in enumerate(content.images)
        ]
        merge = self.geometry.merge_size
        layout: list[tuple[str, int, Sequence[float]]] = [
            (v.kind, v.grid[1] * v.grid[2] // merge**2, v.timestamps) for v in videos
        ]
        layout += [(v.kind, v.tokens(merge), ()) for v in images]
        return _Content(content_pieces(content.texts, layout, self.control), videos + images)

    def _video(self, video: VideoSource, where: str) -> VisualInput:
        if video.kind != "frames":
            return read_video(video, self.settings, self.geometry, self.limits, where)
        chosen = frame_indices(len(video.value), self.settings.max_frames)
        frames = [open_image(video.value[k], self.limits, f"{where}'s frame[{k}]") for k in chosen]
        return prepare_frames(frames, self.settings, self.geometry, where)

    def _forward(self, rows: list[list[int]], visuals: list[list[VisualInput]]) -> list[float]:
        width = max(len(row) for row in rows)
        ids = torch.tensor([[self._pad_id] * (width - len(row)) + row for row in rows])
        mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows])
        types = torch.tensor([[0] * (width - len(row)) + token_types(row, self.control) for row in rows])
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": types}
        for kind, pixels, grids in (
            ("image", "pixel_values", "image_grid_thw"),
            ("video", "pixel_values_videos", "video_grid_thw"),
        ):
            found = [v for row in visuals for v in row if v.kind == kind]
            if found:
                dtype = self._direction.dtype if self.model.dtype is None else self.model.dtype
                inputs[pixels] = torch.cat([v.pixel_values for v in found]).to(dtype)
                inputs[grids] = torch.tensor([v.grid for v in found])
        if not any(visuals):
            # Each row's positions start at its first real token, as when it runs alone.
            inputs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0)
        inputs = {key: value.to(self._device) for key, value in inputs.items()}
        with torch.inference_mode():
            hidden = self.model.model(**inputs, use_cache=False).last_hidden_state[:, -1]
            scores: list[float] = torch.sigmoid(hidden.float() @ self._direction).tolist()
        return scores
