"""Writing parsed pages to the warehouse: quarantine, then bars + watermarks.

A batch of pages becomes one ``upsert_candles`` call whose per-pair watermarks
commit in the same transaction as the bars, so a crash leaves either the whole
batch (and the watermark past it) or none of it. Rejects are quarantined first
(idempotent on ``(source, record_ref)``), so a rerun after a crash re-quarantines
nothing twice.
"""

from __future__ import annotations

from itertools import pairwise

import pandas as pd
import pyarrow as pa

from bqx.warehouse import LoadResult, Warehouse
from ingestion.oanda.parse import Page, empty_rows


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
    tables = [p.rows for p in pages if p.rows.num_rows]
    marks: dict[str, pd.Timestamp] = {}
    for p in pages:
        if p.last_ns is not None:
            t = pd.Timestamp(p.last_ns, unit="ns", tz="UTC")
            marks[p.pair] = max(t, marks.get(p.pair, t))
    if not tables and not marks:
        return LoadResult(0, 0, 0), quarantined
    rows = pa.concat_tables(tables) if tables else empty_rows()
    if _overlap(tables):
        rows = _keep_last(rows)
    return wh.upsert_candles(rows, source=source, watermarks=marks), quarantined


def _overlap(tables: list[pa.Table]) -> bool:
    """Whether two of the (sorted, single-pair) ``tables`` share a bar time."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for t in tables:
        ts = t.column("bar_start")
        first, last = ts[0].value, ts[-1].value
        spans.setdefault(t.column("pair")[0].as_py(), []).append((first, last))
    for ranges in spans.values():
        ranges.sort()
        if any(b[0] <= a[1] for a, b in pairwise(ranges)):
            return True
    return False


def _keep_last(rows: pa.Table) -> pa.Table:
    """``rows`` without repeated (pair, bar_start): the later row wins."""
    keys = pd.DataFrame(
        {
            "pair": rows.column("pair").to_numpy(zero_copy_only=False),
            "t": rows.column("bar_start").to_numpy(),
        }
    )
    return rows.filter(pa.array(~keys.duplicated(keep="last").to_numpy()))
