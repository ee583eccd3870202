"""The one way to write a multimodal query or document: the official dict, checked into MultimodalContent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from qwen_rerank import InvalidInputError
from qwen_rerank.media import ImageSource, MultimodalContent, as_content, is_multimodal


def test_a_str_stays_text() -> None:
    assert as_content("plain text", where="documents[0]") == "plain text"
    assert not is_multimodal("plain text")


def test_the_official_dict_is_checked_into_content() -> None:
    image = Image.new("RGB", (8, 8))
    content = as_content(
        {"text": ["a", "b"], "image": ["page.png", b"\x89PNG...", image, "https://x.test/a.png"]},
        where="documents[2]",
    )
    assert isinstance(content, MultimodalContent)
    assert content.texts == ("a", "b")
    assert [source.kind for source in content.images] == ["path", "bytes", "pil", "url"]
    assert content.videos == () and content.has_media and not content.is_empty


def test_image_sources_of_every_kind() -> None:
    content = MultimodalContent(
        image=[Path("scan.png"), "file:///data/scan.png", "data:image/png;base64,iVBORw0KGgo="]
    )
    assert [(s.kind, s.value) for s in content.images[:2]] == [
        ("path", "scan.png"),
        ("path", "/data/scan.png"),
    ]
    assert content.images[2].kind == "data_url"


def test_a_list_of_frames_is_one_video_and_other_lists_are_videos() -> None:
    frames = MultimodalContent(video=["f0.jpg", "f1.jpg", "f2.jpg"])
    assert [(v.kind, len(v.value)) for v in frames.videos] == [("frames", 3)]
    pil = MultimodalContent(video=[Image.new("RGB", (4, 4)), Image.new("RGB", (4, 4))])
    assert [v.kind for v in pil.videos] == ["frames"]
    files = MultimodalContent(video=["a.mp4", "https://x.test/b.mp4"])
    assert [v.kind for v in files.videos] == ["path", "url"]
    nested = MultimodalContent(video=[["f0.png", "f1.png"], "c.mp4"])
    assert [v.kind for v in nested.videos] == ["frames", "path"]


def test_an_empty_item_reads_as_null() -> None:
    assert MultimodalContent().is_empty
    assert MultimodalContent(text=[], image=[], video=[]).is_empty  # empty lists hold nothing, as officially
    assert as_content({}, where="documents[0]") == MultimodalContent()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"images": "a.png"}, "key(s) 'images'"),
        ({"text": 3}, "text must be a str"),
        ({"text": ["ok", None]}, "text[1] must be a str"),
        ({"image": 3.5}, "image[0] must be a path"),
        ({"image": b""}, "empty bytes"),
        ({"image": "data:text/plain;base64,aGk="}, "not a base64 image"),
        ({"video": [["f.png"], []]}, "video[1] is an empty list of frames"),
        ({"video": "data:video/mp4;base64,AAAA"}, "data URL"),
        (42, "must be a str, a dict"),
        ({"text": "\ud800"}, "surrogate"),
    ],
)
def test_malformed_items_name_the_place_and_the_fix(value: object, expected: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        as_content(value, where="documents[4]")
    assert "documents[4]" in str(info.value)
    assert expected in str(info.value)


def test_reprs_show_kinds_never_paths_or_bytes() -> None:
    content = MultimodalContent(text="secret caption", image=["/home/me/private.png", b"secretbytes"])
    shown = repr(content) + repr(content.images) + repr(content.videos)
    assert "private" not in shown and "secret" not in shown
    assert repr(ImageSource("path", "/home/me/private.png")) == "ImageSource(kind='path')"


def test_the_module_imports_neither_pil_nor_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = "import sys, qwen_rerank.media; print('PIL' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    )
    assert out.stdout.split() == ["False", "False"]
