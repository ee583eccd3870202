"""Video files and URLs are read safely: no URL fetched without consent; bombs, junk and oversize refused.

Each refusal is an InvalidInputError that names the document's index and nothing of the video:
not its path or URL, in the message, the traceback or a log record.
"""

from __future__ import annotations

import logging
import os
import struct
import traceback
from pathlib import Path
from typing import Any

import pytest

from qwen_rerank import InvalidInputError, LocalReranker
from qwen_rerank.local._vl import VLScorer
from qwen_rerank.media import MediaLimits
from tests.helpers import FileServer
from tests.multimodal.videos import moving_frames, write_video


def _scorer(vl_scorer: VLScorer, **limits: Any) -> VLScorer:
    return VLScorer(
        vl_scorer.model, vl_scorer.tokenizer, geometry=vl_scorer.geometry, limits=MediaLimits(**limits)
    )


def _refused(scorer: VLScorer, document: Any, *hidden: str, caplog: pytest.LogCaptureFixture) -> str:
    """Score [a text, document]; return the error's message after checking that nothing shows `hidden`."""
    caplog.set_level(logging.DEBUG)
    with pytest.raises(InvalidInputError) as info:
        scorer.score("what is shown?", ["a text document", document])
    message = str(info.value)
    assert "documents[1]'s video[0]" in message
    shown = "".join(traceback.format_exception(info.value)) + caplog.text
    for secret in hidden:
        assert secret not in shown
    return message


def test_a_video_url_is_not_fetched_without_opt_in(
    vl_scorer: VLScorer, video_server: FileServer, caplog: pytest.LogCaptureFixture
) -> None:
    message = _refused(vl_scorer, {"video": video_server.url}, video_server.url, "s3cr3t", caplog=caplog)
    assert "allow_urls=True" in message
    assert video_server.hits == []


def test_a_video_download_over_the_byte_limit_is_refused(
    vl_scorer: VLScorer, video_server: FileServer, videos: dict[str, str]
) -> None:
    size = os.path.getsize(videos["clip"])
    scorer = _scorer(vl_scorer, allow_urls=True, max_video_bytes=size - 1)
    with pytest.raises(InvalidInputError, match=r"documents\[1\]'s video\[0\] is a download of more than"):
        scorer.score("q", ["a text", {"video": video_server.url}])


def test_a_video_file_over_the_byte_limit_is_refused(
    vl_scorer: VLScorer, videos: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    size = os.path.getsize(videos["clip"])
    scorer = _scorer(vl_scorer, max_video_bytes=size - 1)
    message = _refused(scorer, {"video": videos["clip"]}, videos["clip"], caplog=caplog)
    assert f"over the limit of {size - 1:,} bytes" in message


@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", "libx264"), (".avi", "ffv1")])
def test_a_truncated_video_is_refused(
    suffix: str, codec: str, vl_scorer: VLScorer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    whole = write_video(tmp_path / f"whole{suffix}", moving_frames(8, 40, 60), 8, codec)
    cut = tmp_path / f"private-cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    message = _refused(vl_scorer, {"video": str(cut)}, "private-cut", caplog=caplog)
    assert "broken video" in message or "not a video" in message


@pytest.mark.parametrize(
    "content", [b"\x00\x00\x00\x18ftypmp42", os.urandom(4096), b"Quarterly results, not a video\n" * 40]
)
def test_a_file_that_is_not_a_video_is_refused(
    content: bytes, vl_scorer: VLScorer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clip = tmp_path / "holiday.mp4"
    clip.write_bytes(content)
    message = _refused(vl_scorer, {"video": str(clip)}, "holiday", "Quarterly", caplog=caplog)
    assert "not a video" in message or "no video stream" in message


def test_a_video_declaring_huge_frames_is_refused_before_decoding(
    vl_scorer: VLScorer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A small AVI whose header says its frames are 15000 x 15000: decoding one would take 900 MB.
    data = bytearray(write_video(tmp_path / "small.avi", moving_frames(4, 40, 60), 8).read_bytes())
    header = data.index(b"strf") + 8  # the stream's BITMAPINFOHEADER: size, width, height
    struct.pack_into("<ii", data, header + 4, 15000, 15000)
    bomb = tmp_path / "bomb.avi"
    bomb.write_bytes(bytes(data))
    message = _refused(vl_scorer, {"video": str(bomb)}, "bomb", caplog=caplog)
    assert "15000 x 15000" in message and "not decoded" in message


def test_a_video_with_more_frames_than_the_limit_is_refused(
    vl_scorer: VLScorer, videos: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    message = _refused(_scorer(vl_scorer, max_video_frames=10), {"video": videos["clip"]}, caplog=caplog)
    assert "over the limit of 10 frames" in message


def test_a_video_of_one_frame_is_refused(
    vl_scorer: VLScorer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    still = write_video(tmp_path / "still.mkv", moving_frames(1, 40, 60), 8)
    message = _refused(vl_scorer, {"video": str(still)}, caplog=caplog)
    assert "at least 2" in message


def test_a_missing_or_special_file_is_refused_without_its_path(
    vl_scorer: VLScorer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "private-folder" / "clip.mp4"
    assert "cannot be read" in _refused(vl_scorer, {"video": str(missing)}, "private-folder", caplog=caplog)
    if Path("/dev/zero").exists():
        assert "not a regular file" in _refused(vl_scorer, {"video": "/dev/zero"}, caplog=caplog)


def test_a_playlist_cannot_make_it_fetch_anything(
    vl_scorer: VLScorer, video_server: FileServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(
        f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n{video_server.url}\n#EXT-X-ENDLIST\n",
        encoding="utf-8",
    )
    _refused(vl_scorer, {"video": str(playlist)}, video_server.url, caplog=caplog)
    assert video_server.hits == []


def test_spans_hold_no_video_path(tiny_vl_path: Path, videos: dict[str, str], spans: Any) -> None:
    reranker = LocalReranker(tiny_vl_path, device="cpu")
    documents: list[Any] = [{"video": videos["clip"], "text": "private caption"}, "plain"]
    for trace_content in (False, True):
        spans.clear()
        reranker.trace_content = trace_content
        reranker.rerank("q", documents)
        found = spans.get_finished_spans()
        assert found
        shown = "\n".join(f"{k}={v}" for span in found for k, v in (span.attributes or {}).items())
        assert "clip.mkv" not in shown and str(Path(videos["clip"]).parent) not in shown
        assert ("<video>" in shown and "private caption" in shown) is trace_content
