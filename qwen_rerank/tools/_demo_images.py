"""The demo page's image panel: upload images, rank them against the query, see thumbnails and scores.

It needs a Qwen3-VL-Reranker backend (``Reranker.multimodal``). Only uploaded files are ranked:
the page takes no image URL, so a page user cannot make the server fetch an address.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from qwen_rerank.base import Reranker
from qwen_rerank.media import MultimodalContent
from qwen_rerank.prompt import DEFAULT_INSTRUCTION

__all__ = ["add_image_panel", "chosen_instruction", "rank_images"]


def add_image_panel(
    gr: Any, rank: Callable[..., tuple[list[Any], str]], shared_inputs: Sequence[Any]
) -> None:
    """The panel below the text panel, with its button wired to ``rank``.

    ``shared_inputs`` are the text panel's query, instruction, top_n and backend boxes;
    the API name is ``/rerank_images``.
    """
    panel = gr.Accordion("Images (needs a Qwen3-VL-Reranker backend)", open=True, elem_id="images_panel")
    with panel, gr.Row():
        with gr.Column(scale=1):
            files = gr.File(
                label="Images to rank",
                file_count="multiple",
                file_types=["image"],
                type="filepath",
                elem_id="image_files",
            )
            button = gr.Button("Rerank images", variant="primary", elem_id="rerank_images")
        with gr.Column(scale=1):
            gallery = gr.Gallery(
                label="Ranked images", columns=4, height="auto", object_fit="contain", elem_id="gallery"
            )
            timing = gr.Textbox(label="Time taken", interactive=False, elem_id="image_timing")
    query, instruction, top_n, backend = shared_inputs
    button.click(
        rank,
        inputs=[query, files, instruction, top_n, backend],
        outputs=[gallery, timing],
        api_name="rerank_images",
        concurrency_id="rerank",
    )


def rank_images(
    reranker: Reranker,
    name: str,
    query: str,
    files: Sequence[str],
    instruction: str | None,
    top_n: int | None,
    fail: Callable[[str], Exception],
) -> tuple[list[tuple[str, str]], str]:
    """The gallery (each thumbnail with its rank and score, best first) and the timing line.

    The instruction is read by [`chosen_instruction`][qwen_rerank.tools._demo_images.chosen_instruction].
    """
    if not reranker.multimodal:
        raise fail(f"{name} scores text only. Serve a Qwen3-VL-Reranker to rank images.")
    chosen = chosen_instruction(instruction)
    documents = [MultimodalContent(image=path, where=f"images[{k}]") for k, path in enumerate(files)]
    start = time.perf_counter()
    results = reranker.rerank(query, documents, top_n=top_n, instruction=chosen)
    elapsed = time.perf_counter() - start
    gallery = [
        (files[result.index], f"#{rank} · {result.score:.4f} · {os.path.basename(files[result.index])}")
        for rank, result in enumerate(results, start=1)
    ]
    message = f"Scored {len(files)} image{'s' if len(files) != 1 else ''} in {elapsed:.3f} s with {name}."
    if len(results) < len(files):
        message += f" Showing the top {len(results)}."
    return gallery, message


def chosen_instruction(instruction: str | None) -> str | None:
    """The instruction a page box asks for; ``None`` (the backend's own) when blank or left at
    the text models' default, which the box starts with: a Qwen3-VL-Reranker has its own."""
    given = (instruction or "").strip()
    return None if given in ("", DEFAULT_INSTRUCTION) else given
