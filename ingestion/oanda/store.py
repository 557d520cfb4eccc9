"""Writing parsed pages to the warehouse: quarantine, then bars + watermarks.

A batch of pages becomes one ``upsert_candles`` call whose per-pair watermarks
commit in the same transaction as the bars, so a crash leaves either the whole
batch (and the watermark past it) or none of it. Rejects are quarantined first
(idempotent on ``(source, record_ref)``), so a rerun after a crash re-quarantines
nothing twice.
"""

from __future__ import annotations

import pandas as pd

from bqx.warehouse import LoadResult, Warehouse
from ingestion.oanda.parse import Page


def read_watermarks(wh: Warehouse, pairs: list[str]) -> dict[str, pd.Timestamp]:
    """``{pair: last_bar_start}`` from ``raw.ingest_watermarks`` for ``pairs``."""
    if not pairs:
        return {}
    marks = ", ".join("?" for _ in pairs)
    df = wh.query_df(
        "select pair, last_bar_start from raw.ingest_watermarks "
        f"where pair in ({marks})",
        list(pairs),
    )
    return {
        row.pair: pd.Timestamp(row.last_bar_start).tz_convert("UTC")
        for row in df.itertuples(index=False)
    }


def load_pages(wh: Warehouse, pages: list[Page], source: str) -> tuple[LoadResult, int]:
    """Quarantine the rejects of ``pages``, then upsert their rows with watermarks.

    Returns:
        The load result and the number of newly quarantined records.
    """
    rejects = [p.rejects for p in pages if not p.rejects.empty]
    quarantined = wh.quarantine(pd.concat(rejects, ignore_index=True)) if rejects else 0
    frames = [p.rows for p in pages if not p.rows.empty]
    marks: dict[str, pd.Timestamp] = {}
    for p in pages:
        if p.last_ns is not None:
            t = pd.Timestamp(p.last_ns, unit="ns", tz="UTC")
            marks[p.pair] = max(t, marks.get(p.pair, t))
    if not frames and not marks:
        return LoadResult(0, 0, 0), quarantined
    rows = (
        pd.concat(frames, ignore_index=True).drop_duplicates(
            ["pair", "bar_start"], keep="last"
        )
        if frames
        else pages[0].rows
    )
    return wh.upsert_candles(rows, source=source, watermarks=marks), quarantined
