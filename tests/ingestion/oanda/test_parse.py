"""The candles parser: the column-wise path equals the per-candle one, and bad
candles are quarantined with a reason, never loaded and never failing a batch."""

from __future__ import annotations

import json

import pytest

from ingestion.oanda import parse
from ingestion.oanda.fake import FakeOanda


def body(market, price: str, unix: bool = True, count: int = 800) -> dict:
    raw, _ = FakeOanda(market).candles(
        "EUR_USD",
        {"granularity": "M1", "price": price, "count": str(count),
         "from": "2024-01-04T00:00:00Z"},
        unix,
    )  # fmt: skip
    return json.loads(raw)


@pytest.mark.parametrize("price", ["M", "MBA", "BA"])
def test_column_path_equals_per_candle_path(market, price):
    b = body(market, price)
    fast = parse.parse_candles(b, "EUR_USD", price, "oanda:" + price)
    slow = parse._parse_each(b, b["candles"], "EUR_USD", price, "oanda:" + price, 60)
    assert fast.rows.num_rows == 800 and fast.rows.equals(slow.rows)
    assert (fast.last_ns, fast.received) == (slow.last_ns, slow.received)
    assert list(fast.complete_times) == list(slow.complete_times)
    rfc = body(market, price, unix=False)  # RFC3339 times: the per-candle path
    assert parse.parse_candles(rfc, "EUR_USD", price, "x").rows.equals(fast.rows)


def test_bad_candles_get_reasons_and_the_rest_loads(market):
    b = body(market, "M")
    c = b["candles"]
    c[3]["mid"]["o"] = "1.1234567"  # 7 decimals: would not fit decimal(18, 6)
    c[4]["mid"]["c"] = "1e0"
    c[5]["volume"] = 2.0
    c[6]["mid"]["h"], c[6]["mid"]["l"] = (
        c[6]["mid"]["l"],
        str(float(c[6]["mid"]["h"]) + 1),
    )
    page = parse.parse_candles(b, "EUR_USD", "M", "oanda:M")
    reasons = dict(zip(page.rejects["record_ref"], page.rejects["reason"]))
    assert len(reasons) == 4 and page.rows.num_rows == 800 - 4
    text = " | ".join(reasons.values())
    assert "more than 6 decimals" in text and "non-numeric price '1e0'" in text
    assert "volume 2.0" in text and "high" in text
    stored = {t.timestamp() for t in page.rows.column("bar_start").to_pylist()}
    assert not stored & {float(c[i]["time"]) for i in (3, 4, 5, 6)}
