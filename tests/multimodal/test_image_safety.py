"""Images from documents are read safely: no URL fetched without consent, bombs and junk refused.

Each refusal is an InvalidInputError that names the document's index and nothing of the image:
not its path, its URL or its bytes, in the message, the traceback or a log record.
"""

from __future__ import annotations

import base64
import io
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from qwen_rerank import InvalidInputError
from qwen_rerank._media_io import MediaLimits
from qwen_rerank.local._vl import VLScorer
from tests.helpers import FileServer, served_file

SECRET = "s3cr3t-token-in-the-url"


@pytest.fixture
def image_server(media: dict[str, str]) -> Iterator[FileServer]:
    with served_file(Path(media["small"]).read_bytes(), "image/png", f"/image.png?token={SECRET}") as server:
        yield server


def _scorer(vl_scorer: VLScorer, **limits: Any) -> VLScorer:
    return VLScorer(
        vl_scorer.model, vl_scorer.tokenizer, geometry=vl_scorer.geometry, limits=MediaLimits(**limits)
    )


def _refused(
    scorer: VLScorer, document: Any, *hidden: str, caplog: pytest.LogCaptureFixture, logs: bool = True
) -> str:
    """Score [a text, document]; return the error's message after checking it hides `hidden`.

    With `logs`, no log record holds them either. (A URL the user allowed is in httpx's own
    INFO record of the request, as every httpx request is.)
    """
    caplog.set_level(logging.DEBUG)
    with pytest.raises(InvalidInputError) as info:
        scorer.score("what is shown?", ["a text document", document])
    message = str(info.value)
    assert "documents[1]" in message
    shown = "".join(traceback.format_exception(info.value)) + (caplog.text if logs else "")
    for secret in hidden:
        assert secret not in shown
    return message


def test_a_url_is_not_fetched_without_opt_in(
    vl_scorer: VLScorer, image_server: FileServer, caplog: pytest.LogCaptureFixture
) -> None:
    message = _refused(vl_scorer, {"image": image_server.url}, image_server.url, SECRET, caplog=caplog)
    assert "allow_urls=True" in message
    assert image_server.hits == []


def test_a_url_is_fetched_with_opt_in_and_scores_as_its_bytes(
    vl_scorer: VLScorer, image_server: FileServer, media: dict[str, str]
) -> None:
    scorer = _scorer(vl_scorer, allow_urls=True)
    fetched = scorer.score("what is shown?", [{"image": image_server.url}])
    local = scorer.score("what is shown?", [{"image": Path(media["small"]).read_bytes()}])
    assert len(image_server.hits) == 1
    assert fetched == pytest.approx(local, abs=1e-6)


def test_a_download_over_the_byte_limit_is_refused(
    vl_scorer: VLScorer, image_server: FileServer, caplog: pytest.LogCaptureFixture
) -> None:
    scorer = _scorer(vl_scorer, allow_urls=True, max_bytes=100)
    message = _refused(
        scorer, {"image": image_server.url}, image_server.url, SECRET, caplog=caplog, logs=False
    )
    assert "more than 100 bytes" in message


def test_a_decompression_bomb_is_refused(
    vl_scorer: VLScorer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 20,000 x 20,000 one-bit pixels: a file of tens of kilobytes that decodes to 400 million pixels,
    # more than PIL itself allows (its DecompressionBombError).
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb, optimize=True)
    assert bomb.stat().st_size < 200_000
    message = _refused(vl_scorer, {"image": str(bomb)}, str(bomb), caplog=caplog)
    assert "decompression bomb" in message


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(
    vl_scorer: VLScorer, media: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    # Only the header of a 2000 x 2000 PNG: decoding it would fail as a broken file, so the error
    # about pixels shows that the header alone was read.
    full = io.BytesIO()
    Image.new("RGB", (2000, 2000)).save(full, format="PNG")
    header = full.getvalue()[:60]
    scorer = _scorer(vl_scorer, max_pixels=1_000_000)
    message = _refused(scorer, {"image": header}, caplog=caplog)
    assert "4,000,000 pixels" in message and "not decoded" in message


def test_a_file_that_is_not_an_image_is_refused(
    vl_scorer: VLScorer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notes = tmp_path / "notes.png"
    notes.write_text("Quarterly figures, not a picture.", encoding="utf-8")
    message = _refused(vl_scorer, {"image": str(notes)}, str(notes), "Quarterly", caplog=caplog)
    assert "not an image" in message


def test_a_broken_image_is_refused(
    vl_scorer: VLScorer, media: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    cut = Path(media["big"]).read_bytes()[:2000]
    message = _refused(vl_scorer, {"image": cut}, caplog=caplog)
    assert "broken image" in message


def test_postscript_is_not_handed_to_ghostscript(
    vl_scorer: VLScorer, caplog: pytest.LogCaptureFixture
) -> None:
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    message = _refused(vl_scorer, {"image": eps}, caplog=caplog)
    assert "not an image" in message


def test_a_missing_file_is_refused_without_its_path(
    vl_scorer: VLScorer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "private-folder" / "scan.png"
    message = _refused(vl_scorer, {"image": str(missing)}, "private-folder", caplog=caplog)
    assert "cannot be read" in message


def test_a_file_over_the_byte_limit_is_refused(
    vl_scorer: VLScorer, media: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    message = _refused(
        _scorer(vl_scorer, max_bytes=100), {"image": media["big"]}, media["big"], caplog=caplog
    )
    assert "over the limit of 100 bytes" in message


def test_a_data_url_is_read_and_a_bad_one_refused(
    vl_scorer: VLScorer, media: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    data = Path(media["small"]).read_bytes()
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert vl_scorer.score("q", [{"image": url}]) == pytest.approx(
        vl_scorer.score("q", [{"image": data}]), abs=1e-6
    )
    bad = "data:image/png;base64,!!not-base64!!"
    message = _refused(vl_scorer, {"image": bad}, "not-base64", caplog=caplog)
    assert "not valid" in message


def test_a_frame_that_is_not_an_image_names_its_document(
    vl_scorer: VLScorer, media: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    junk = tmp_path / "frame.png"
    junk.write_bytes(b"\x00" * 64)
    message = _refused(vl_scorer, {"video": [media["frame0"], str(junk)]}, str(junk), caplog=caplog)
    assert "video[0]'s frame[1]" in message


def test_frames_of_different_sizes_are_refused(
    vl_scorer: VLScorer, media: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    message = _refused(vl_scorer, {"video": [media["frame0"], media["big"]]}, caplog=caplog)
    assert "one size" in message
