"""Walk-forward splits by time, with an embargo and a purge of crossing labels.

A fold is three consecutive windows, train -> valid -> test, separated by an
embargo. A row belongs to a window when its ``event_timestamp`` lies in the window
AND its label window ends before the window does (``label_end < window.end``): a row
whose label reaches across a boundary is purged, never used as a target, so no label
window ever overlaps a later window. The embargo must be at least the label horizon
in minutes; the purge is what makes it exact when a label spans a weekend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SEGMENTS = ("train", "valid", "test")


class SplitError(ValueError):
    """A split specification that cannot give valid folds."""


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[start, end)``."""

    name: str
    start: pd.Timestamp
    end: pd.Timestamp


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: train, valid and test windows in time order."""

    index: int
    train: Window
    valid: Window
    test: Window

    @property
    def windows(self) -> tuple[Window, Window, Window]:
        """The three windows in time order."""
        return (self.train, self.valid, self.test)


def _td(value: str | pd.Timedelta) -> pd.Timedelta:
    try:
        return pd.Timedelta(value)
    except (TypeError, ValueError) as exc:
        raise SplitError(f"not a duration: {value!r}") from exc


def _ts(value: str | pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def walk_forward(
    start: str | pd.Timestamp,
    end: str | pd.Timestamp,
    train: str | pd.Timedelta,
    valid: str | pd.Timedelta,
    test: str | pd.Timedelta,
    embargo: str | pd.Timedelta,
    horizon_minutes: int,
    step: str | pd.Timedelta | None = None,
    folds: int | None = None,
    expanding: bool = False,
) -> list[Fold]:
    """Consecutive walk-forward folds inside ``[start, end)``.

    Args:
        start: first timestamp of the first training window (UTC).
        end: no window reaches past this timestamp.
        train: length of a training window.
        valid: length of a validation window.
        test: length of a test window.
        embargo: gap between consecutive windows; at least ``horizon_minutes``.
        horizon_minutes: the label horizon in minutes (bars).
        step: shift between folds (default: the test length).
        folds: at most this many folds (default: as many as fit).
        expanding: keep every training window anchored at ``start``.

    Returns:
        The folds, earliest first.

    Raises:
        SplitError: on a short embargo, non-positive lengths or no fold fitting.
    """
    t0, t_end = _ts(start), _ts(end)
    d_train, d_valid, d_test, gap = _td(train), _td(valid), _td(test), _td(embargo)
    d_step = _td(step) if step is not None else d_test
    if gap < pd.Timedelta(minutes=horizon_minutes):
        raise SplitError(
            f"embargo {gap} is shorter than the label horizon {horizon_minutes} min"
        )
    if min(d_train, d_valid, d_test, d_step) <= pd.Timedelta(0):
        raise SplitError("train, valid, test and step must be positive durations")
    out: list[Fold] = []
    k = 0
    while folds is None or k < folds:
        tr_start = t0 if expanding else t0 + k * d_step
        tr_end = t0 + k * d_step + d_train
        va_start = tr_end + gap
        te_start = va_start + d_valid + gap
        te_end = te_start + d_test
        if te_end > t_end:
            break
        out.append(
            Fold(
                k,
                Window("train", tr_start, tr_end),
                Window("valid", va_start, va_start + d_valid),
                Window("test", te_start, te_end),
            )
        )
        k += 1
    if not out:
        raise SplitError(f"no fold fits between {t0} and {t_end}")
    return out


def explicit_fold(segments: dict[str, list[str]], horizon_minutes: int) -> Fold:
    """One fold from explicit ``{train|valid|test: [start, end]}`` dates.

    Raises:
        SplitError: when a window is missing, empty, out of order or the gap
            between windows is shorter than the label horizon.
    """
    try:
        wins = [Window(n, _ts(segments[n][0]), _ts(segments[n][1])) for n in SEGMENTS]
    except (KeyError, IndexError, TypeError) as exc:
        raise SplitError(f"segments need train, valid and test [start, end]: {exc}")
    horizon = pd.Timedelta(minutes=horizon_minutes)
    for a, b in zip(wins, wins[1:], strict=False):
        if a.end <= a.start or b.start - a.end < horizon:
            raise SplitError(
                f"{a.name} -> {b.name}: windows must be ordered with a gap of at "
                f"least the label horizon ({horizon_minutes} min)"
            )
    if wins[2].end <= wins[2].start:
        raise SplitError("test window is empty")
    return Fold(0, *wins)


def assign(
    timestamps: pd.Series, label_end: pd.Series, fold: Fold
) -> pd.Series:
    """The window name of each row (``train``/``valid``/``test``) or ``None``.

    A row is in a window when ``start <= t < end`` and ``label_end < end``; rows
    with no label (``label_end`` missing) are in no window.
    """
    t = _naive(timestamps)
    le = _naive(label_end)
    out = np.full(len(t), None, dtype=object)
    has_label = ~pd.isna(le)
    for w in fold.windows:
        start = w.start.tz_convert(None).to_datetime64()
        end = w.end.tz_convert(None).to_datetime64()
        inside = has_label & (t >= start) & (t < end)
        inside[inside] &= le[inside] < end
        out[inside] = w.name
    return pd.Series(out, index=timestamps.index, name="segment")


def _naive(values: pd.Series) -> np.ndarray:
    """UTC ``datetime64[ns]`` values without a time zone (NaT kept)."""
    idx = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    return idx.tz_convert(None).to_numpy(dtype="datetime64[ns]")
