"""An independent implementation of the official Qwen3-VL-Reranker loop, used as the test oracle.

It follows ``src/models/qwen3_vl_reranker.py`` of QwenLM/Qwen3-VL-Embedding and the
qwen-vl-utils 0.0.14 functions it calls, one pair at a time, in the plainest
way, and shares no code with qwen_rerank on purpose: the chat is rendered by
the checkpoint's chat template, placeholders are expanded in the text as the
processor does, the text is tokenized whole, image pixels go through
transformers' own image processor (``do_resize=False``, as the official call),
and video patches are cut out one by one. Only torchvision is missing here:
its tensor resize is the ``interpolate`` call it makes.

It takes what the official code takes: images as paths or PIL images, videos
as lists of frames (paths or PIL images) or as video file paths. A file is
decoded as torchvision's ``read_video`` decodes it (qwen-vl-utils' reader when
neither torchcodec nor decord is installed): PyAV, every frame at once, to
``rgb24``, by presentation time; then qwen-vl-utils' ``smart_nframes``,
``linspace`` indices, its resize bounds without ``total_pixels``, and the
processor's timestamps from the frame indices and the stream's frame rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, Qwen3VLForConditionalGeneration

SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct provided. "
    'Note that the answer can only be "yes" or "no".'
)
INSTRUCTION = "Given a search query, retrieve relevant candidates that answer the query."


@dataclass
class Trace:
    """What the oracle saw for one pair, so that a test can check it covers what it claims."""

    untruncated_length: int = 0
    image_grids: list[list[int]] = field(default_factory=list)
    video_grids: list[list[int]] = field(default_factory=list)
    video_stamps: list[list[float]] = field(default_factory=list)


class OfficialVLReranker:
    def __init__(
        self,
        path: str,
        max_length: int = 10240,
        min_pixels: int = 4 * 32 * 32,
        max_pixels: int = 1800 * 32 * 32,
        total_pixels: int = 10 * 768 * 32 * 32,
        max_frames: int = 64,
        fps: float = 1,
    ) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.image_processor = AutoImageProcessor.from_pretrained(path)
        lm = Qwen3VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
        self.model = lm.model
        yes = self.tokenizer.get_vocab()["yes"]
        no = self.tokenizer.get_vocab()["no"]
        self.linear = torch.nn.Linear(lm.lm_head.weight.shape[1], 1, bias=False)
        with torch.no_grad():
            self.linear.weight[0] = lm.lm_head.weight[yes] - lm.lm_head.weight[no]
        self.max_length = max_length
        self.min_pixels, self.max_pixels = min_pixels, max_pixels
        self.total_pixels, self.max_frames, self.fps = total_pixels, max_frames, fps

    # ---- format_mm_content / format_mm_instruction ----
    def content(self, item: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{"type": "text", "text": prefix}]
        text, image, video = item.get("text"), item.get("image"), item.get("video")
        texts = [] if text is None else [text] if isinstance(text, str) else text
        images = [] if image is None else image if isinstance(image, list) else [image]
        if video is None:
            videos = []
        elif isinstance(video, str) or (isinstance(video, list) and self.is_frame(video[0])):
            videos = [video]  # one video: a file, or a list of frames
        else:
            videos = video
        if not texts and not images and not videos:
            return [*out, {"type": "text", "text": "NULL"}]
        for vid in videos:
            if isinstance(vid, str):
                out.append({"type": "video", "video": vid, "fps": self.fps, "max_frames": self.max_frames})
                continue
            if len(vid) > self.max_frames:
                vid = [vid[i] for i in np.linspace(0, len(vid) - 1, self.max_frames, dtype=int).tolist()]
            out.append({"type": "video", "video": vid})
        for img in images:
            out.append({"type": "image", "image": img})
        for txt in texts:
            out.append({"type": "text", "text": txt})
        return out

    @staticmethod
    def is_frame(element: Any) -> bool:
        return isinstance(element, Image.Image) or (isinstance(element, str) and element.endswith(".png"))

    def messages(self, query: dict[str, Any], doc: dict[str, Any], instruction: str) -> list[dict[str, Any]]:
        user = [{"type": "text", "text": "<Instruct>: " + instruction}]
        user += self.content(query, "<Query>:") + self.content(doc, "\n<Document>:")
        return [
            {"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
            {"role": "user", "content": user},
        ]

    # ---- qwen-vl-utils ----
    @staticmethod
    def smart_resize(
        height: int, width: int, factor: int, min_pixels: float, max_pixels: float
    ) -> tuple[int, int]:
        h_bar = max(factor, round(height / factor) * factor)
        w_bar = max(factor, round(width / factor) * factor)
        if h_bar * w_bar > max_pixels:
            beta = math.sqrt((height * width) / max_pixels)
            h_bar = math.floor(height / beta / factor) * factor
            w_bar = math.floor(width / beta / factor) * factor
        elif h_bar * w_bar < min_pixels:
            beta = math.sqrt(min_pixels / (height * width))
            h_bar = math.ceil(height * beta / factor) * factor
            w_bar = math.ceil(width * beta / factor) * factor
        return h_bar, w_bar

    @staticmethod
    def rgb(image: Image.Image) -> Image.Image:
        if image.mode == "RGBA":
            white = Image.new("RGB", image.size, (255, 255, 255))
            white.paste(image, mask=image.split()[3])
            return white
        return image.convert("RGB")

    def fetch_image(self, image: Any, factor: int, min_pixels: float, max_pixels: float) -> Image.Image:
        image = self.rgb(image if isinstance(image, Image.Image) else Image.open(image))
        height, width = self.smart_resize(image.height, image.width, factor, min_pixels, max_pixels)
        return image.resize((width, height))

    def fetch_video(self, frames: list[Any]) -> tuple[torch.Tensor, list[float]]:
        images = [self.fetch_image(frame, 64, 4 * 64 * 64, 16384 * 64 * 64) for frame in frames]
        if len(images) % 2:
            images.append(images[-1])
        video = torch.stack([torch.from_numpy(np.array(image).transpose(2, 0, 1)) for image in images])
        count, _, height, width = video.shape
        min_pixels = 128 * 32 * 32
        max_pixels = max(min(768 * 32 * 32, self.total_pixels / count * 2), int(min_pixels * 1.05))
        height, width = self.smart_resize(height, width, 32, min_pixels, max_pixels)
        resized = torch.nn.functional.interpolate(
            video.float(), size=[height, width], mode="bicubic", align_corners=False, antialias=True
        )
        video = resized.clamp(0, 255).round().to(torch.uint8).float()
        seconds = [k / 2.0 for k in range(count)]
        return video, [(seconds[k] + seconds[k + 1]) / 2 for k in range(0, count, 2)]

    @staticmethod
    def read_video(path: str) -> tuple[torch.Tensor, float]:
        """torchvision's read_video with PyAV: all frames ``(T, C, H, W)`` uint8, and the average rate."""
        import av

        with av.open(path, metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            container.seek(0, any_frame=False, backward=True, stream=stream)
            frames = {frame.pts: frame for frame in container.decode(video=0)}
            fps = float(stream.average_rate)
        kept = [frames[pts].to_rgb().to_ndarray() for pts in sorted(frames) if pts >= 0]
        return torch.from_numpy(np.stack(kept)).permute(0, 3, 1, 2), fps

    def fetch_video_file(self, element: dict[str, Any]) -> tuple[torch.Tensor, list[float]]:
        """qwen-vl-utils' fetch_video for a path, and the processor's timestamps from its metadata."""
        video, fps = self.read_video(element["video"])
        total = video.shape[0]
        wanted = total / fps * element["fps"]
        most = math.floor(element["max_frames"] / 2) * 2
        count = math.floor(min(min(max(wanted, 4), most), total) / 2) * 2
        assert 2 <= count <= total
        indices = torch.linspace(0, total - 1, count).round().long()
        video = video[indices]
        _, _, height, width = video.shape
        min_pixels = 128 * 32 * 32
        total_pixels = 128000 * 32 * 32 * 0.9
        max_pixels = max(min(768 * 32 * 32, total_pixels / count * 2), int(min_pixels * 1.05))
        height, width = self.smart_resize(height, width, 32, min_pixels, max_pixels)
        resized = torch.nn.functional.interpolate(
            video.float(), size=[height, width], mode="bicubic", align_corners=False, antialias=True
        )
        video = resized.clamp(0, 255).round().to(torch.uint8).float()
        seconds = [k / fps for k in indices.tolist()]
        return video, [(seconds[k] + seconds[k + 1]) / 2 for k in range(0, count, 2)]

    @staticmethod
    def video_patches(video: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        frames = (video - 127.5) / 127.5
        count, _, height, width = frames.shape
        t, h, w = count // 2, height // 16, width // 16
        rows = []
        for k in range(t):
            for bh in range(h // 2):
                for bw in range(w // 2):
                    for mh in range(2):
                        for mw in range(2):
                            y, x = (2 * bh + mh) * 16, (2 * bw + mw) * 16
                            block = frames[2 * k : 2 * k + 2, :, y : y + 16, x : x + 16]  # (T, C, p, p)
                            rows.append(block.permute(1, 0, 2, 3).reshape(-1))
        return torch.stack(rows), [t, h, w]

    # ---- tokenize / compute_scores ----
    @torch.no_grad()
    def score_pair(
        self, query: dict[str, Any], doc: dict[str, Any], instruction: str = INSTRUCTION
    ) -> tuple[float, Trace]:
        trace = Trace()
        messages = self.messages(query, doc, instruction)
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        elements = [item for item in messages[1]["content"] if item["type"] in ("image", "video")]
        images = [
            self.fetch_image(e["image"], 32, self.min_pixels, self.max_pixels)
            for e in elements
            if e["type"] == "image"
        ]
        videos = [
            self.fetch_video_file(e) if isinstance(e["video"], str) else self.fetch_video(e["video"])
            for e in elements
            if e["type"] == "video"
        ]
        inputs: dict[str, torch.Tensor] = {}
        if images:
            processed = self.image_processor(images=images, do_resize=False, return_tensors="pt")
            inputs["pixel_values"], inputs["image_grid_thw"] = (
                processed["pixel_values"],
                processed["image_grid_thw"],
            )
            for grid in processed["image_grid_thw"].tolist():
                text = text.replace(
                    "<|image_pad|>", "<|placeholder|>" * (grid[0] * grid[1] * grid[2] // 4), 1
                )
                trace.image_grids.append(grid)
            text = text.replace("<|placeholder|>", "<|image_pad|>")
        if videos:
            patches = [self.video_patches(video) for video, _ in videos]
            inputs["pixel_values_videos"] = torch.cat([p for p, _ in patches])
            inputs["video_grid_thw"] = torch.tensor([g for _, g in patches])
            for (_, grid), (_, stamps) in zip(patches, videos, strict=True):
                per_frame = grid[1] * grid[2] // 4
                placeholder = "".join(
                    f"<{stamp:.1f} seconds><|vision_start|>"
                    + "<|placeholder|>" * per_frame
                    + "<|vision_end|>"
                    for stamp in stamps
                )
                text = text.replace("<|vision_start|><|video_pad|><|vision_end|>", placeholder, 1)
                trace.video_grids.append(grid)
                trace.video_stamps.append(list(stamps))
            text = text.replace("<|placeholder|>", "<|video_pad|>")
        ids = self.tokenizer(text)["input_ids"]
        trace.untruncated_length = len(ids) - 5
        ids = self.truncate(ids[:-5], self.max_length, set(self.tokenizer.all_special_ids)) + ids[-5:]
        types = [1 if i == self.tokenizer.convert_tokens_to_ids("<|image_pad|>") else 0 for i in ids]
        types = [
            2 if i == self.tokenizer.convert_tokens_to_ids("<|video_pad|>") else t
            for i, t in zip(ids, types, strict=True)
        ]
        inputs["input_ids"] = torch.tensor([ids])
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        inputs["mm_token_type_ids"] = torch.tensor([types])
        hidden = self.model(**inputs).last_hidden_state[:, -1]
        return float(torch.sigmoid(self.linear(hidden)).item()), trace

    @staticmethod
    def truncate(tokens: list[int], max_length: int, special: set[int]) -> list[int]:
        if len(tokens) <= max_length:
            return tokens
        budget = max_length - sum(1 for token in tokens if token in special)
        kept, used = [], 0
        for token in tokens:
            if token in special:
                kept.append(token)
            elif used < budget:
                kept.append(token)
                used += 1
        return kept
