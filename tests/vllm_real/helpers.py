"""What the real-vLLM tests share: the texts scored, the tolerance, and `qwen-rerank check`'s report."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qwen_rerank.cli import main

TOL = 2e-3  # float32 on both sides; they agree to about 1e-6
QUERY = "What is the capital of China?"
DOCS = [
    "The capital of China is Beijing, the political and cultural centre of the country.",
    "Gravity is a force that attracts two bodies towards each other.",
    "Beijing hosted the 2008 Summer Olympics.",
    "Pandas eat bamboo.",
]
CJK_QUERY = "中国的首都是哪里？"
CJK_DOCS = ["北京是中华人民共和国的首都。", "熊猫主要以竹子为食。", "引力是两个物体之间相互吸引的力。"]
OTHER = "Given a statement, retrieve passages that contradict it"


def close(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def check(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    """The exit status, and the findings by name plus the report's own keys under ``"report"``."""
    if "--max-length" not in extra:
        extra = ("--max-length", "512", *extra)
    status = main(["check", "--base-url", url, "--json", *extra])
    report = json.loads(capsys.readouterr().out)
    return status, {c["name"]: c for c in report["checks"]} | {"report": report}
