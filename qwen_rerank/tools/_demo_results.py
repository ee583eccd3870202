"""The demo page's results: the table's rows, the bar chart of the best scores, counted nouns."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from qwen_rerank.media import describe
from qwen_rerank.results import RerankResult

__all__ = ["CHART_BARS", "TABLE_COLUMNS", "count_of", "score_bars", "table_row"]

TABLE_COLUMNS = ["rank", "index", "score", "document"]
CHART_BARS = 20
_PREVIEW_CHARS = 160


def table_row(rank: int, result: RerankResult) -> list[Any]:
    flat = " ".join(describe(result.document).split())
    preview = flat if len(flat) <= _PREVIEW_CHARS else flat[: _PREVIEW_CHARS - 1] + "…"
    return [rank, result.index, result.score, preview]


def score_bars(results: Sequence[RerankResult], total: int) -> str:
    """Horizontal bars of the best `CHART_BARS` scores, labelled `#rank · doc index`."""
    shown = results[:CHART_BARS]
    caption = f"Top {len(shown)} of {total} scores" if len(shown) < total else f"All {total} scores"
    rows = []
    for rank, result in enumerate(shown, start=1):
        width = max(0.0, min(1.0, result.score)) * 100
        rows.append(
            '<div class="qr-bar-row" style="display:flex;align-items:center;gap:8px;margin:2px 0;'
            'font-size:13px;line-height:18px">'
            f'<span class="qr-bar-label" style="flex:0 0 96px;white-space:nowrap">#{rank} · doc '
            f"{result.index}</span>"
            '<span style="flex:1 1 auto;background:var(--neutral-100,#f3f4f6);height:14px">'
            f'<span class="qr-bar" style="display:block;height:14px;width:{width:.2f}%;'
            'background:var(--color-accent,#f97316)"></span></span>'
            '<span class="qr-bar-value" style="flex:0 0 56px;text-align:right;'
            f'font-variant-numeric:tabular-nums">{result.score:.4f}</span></div>'
        )
    return (
        f'<div class="qr-bars"><div class="qr-caption" style="font-weight:600;margin-bottom:4px">'
        f"{html.escape(caption)}</div>{''.join(rows)}</div>"
    )


def count_of(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
