"""Walk-forward splits: no label window ever crosses a window boundary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.splits import SplitError, assign, explicit_fold, walk_forward


def _series(gaps: list[int], h: int) -> tuple[pd.Series, pd.Series]:
    """Bar-end timestamps with the given minute gaps and their label ends."""
    t0 = pd.Timestamp("2024-01-08", tz="UTC")
    ts = pd.Series(t0 + pd.to_timedelta(np.cumsum(gaps), unit="min"))
    return ts, ts.shift(-h)


@settings(max_examples=30, deadline=None)
@given(
    gaps=st.lists(st.integers(1, 400), min_size=20, max_size=400),
    h=st.integers(1, 60),
    lengths=st.tuples(
        st.integers(60, 3000), st.integers(30, 1500), st.integers(30, 1500)
    ),
    extra=st.integers(0, 120),
)
def test_no_label_window_crosses_a_boundary(gaps, h, lengths, extra):
    ts, label_end = _series(gaps, h)
    train, valid, test = (pd.Timedelta(minutes=m) for m in lengths)
    try:
        folds = walk_forward(
            ts.iloc[0], ts.iloc[-1], train, valid, test,
            embargo=pd.Timedelta(minutes=h + extra), horizon_minutes=h,
        )
    except SplitError:
        return
    for fold in folds:
        seg = assign(ts, label_end, fold)
        for w in fold.windows:
            inside = seg == w.name
            assert (ts[inside] >= w.start).all() and (ts[inside] < w.end).all()
            # the label window [t, label_end] lies inside the same window
            assert (label_end[inside] < w.end).all()
        for a, b in zip(fold.windows, fold.windows[1:]):
            assert b.start - a.end >= pd.Timedelta(minutes=h)
            # no row of an earlier window has a label reaching the next one
            early = seg == a.name
            assert not (label_end[early] >= b.start).any()


def test_rows_without_label_are_in_no_window():
    ts, label_end = _series([1] * 100, 5)
    fold = explicit_fold(
        {"train": [ts.iloc[0], ts.iloc[40]], "valid": [ts.iloc[50], ts.iloc[70]],
         "test": [ts.iloc[80], ts.iloc[99] + pd.Timedelta(minutes=10)]},
        horizon_minutes=5,
    )
    seg = assign(ts, label_end, fold)
    assert seg.iloc[-5:].isna().all()  # the last h rows have no label
    # purge: train rows 36..39 have labels ending at or after the train end
    assert (seg.iloc[:35] == "train").all() and seg.iloc[35:40].isna().all()


def test_short_embargo_is_refused():
    with pytest.raises(SplitError, match="embargo"):
        walk_forward("2024-01-01", "2024-02-01", "10D", "2D", "2D", "10min", 60)
    with pytest.raises(SplitError, match="gap of at least"):
        explicit_fold(
            {
                "train": ["2024-01-01", "2024-01-05"],
                "valid": ["2024-01-05", "2024-01-06"],
                "test": ["2024-01-07", "2024-01-08"],
            },
            horizon_minutes=15,
        )


def test_walk_forward_folds_move_by_step():
    folds = walk_forward("2024-01-01", "2024-01-31", "10D", "3D", "3D", "1h", 60,
                         step="3D")
    assert len(folds) >= 4
    starts = [f.test.start for f in folds]
    assert all(b - a == pd.Timedelta("3D") for a, b in zip(starts, starts[1:]))
    assert folds[-1].test.end <= pd.Timestamp("2024-01-31", tz="UTC")
