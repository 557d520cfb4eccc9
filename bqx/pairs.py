"""The pair universe of features.md: names, parsing, cross-pair relations, triangles.

Every place where a pair name enters bqx (CLI flags, CSV files, API payloads,
settings) goes through :func:`parse_pair` or :func:`resolve_pairs`, so a bad name is
refused with a message naming it before any request or SQL is made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import combinations
from typing import Iterable, Literal

MAJORS = ("EUR", "GBP", "AUD", "NZD", "USD", "CAD", "CHF", "JPY")
CURRENCIES = MAJORS + ("SGD",)

UNIVERSE_28: tuple[str, ...] = (
    "AUD_CAD", "AUD_CHF", "AUD_JPY", "AUD_NZD", "AUD_USD", "CAD_CHF", "CAD_JPY",
    "CHF_JPY", "EUR_AUD", "EUR_CAD", "EUR_CHF", "EUR_GBP", "EUR_JPY", "EUR_NZD",
    "EUR_USD", "GBP_AUD", "GBP_CAD", "GBP_CHF", "GBP_JPY", "GBP_NZD", "GBP_USD",
    "NZD_CAD", "NZD_CHF", "NZD_JPY", "NZD_USD", "USD_CAD", "USD_CHF", "USD_JPY",
)  # fmt: skip
SGD_PAIRS: tuple[str, ...] = (
    "EUR_SGD", "GBP_SGD", "USD_SGD", "AUD_SGD", "CAD_SGD", "NZD_SGD", "SGD_JPY",
    "SGD_CHF",
)  # fmt: skip
UNIVERSE_36: tuple[str, ...] = tuple(sorted(UNIVERSE_28 + SGD_PAIRS))

Relation = Literal["base_base", "quote_quote", "base_quote", "quote_base"]
RELATIONS: tuple[Relation, ...] = ("base_base", "quote_quote", "base_quote", "quote_base")

_NAME = re.compile(r"^([A-Z]{3})[_/]?([A-Z]{3})$")


class UnknownPairError(ValueError):
    """A pair name that is not in the universe."""


@dataclass(frozen=True, order=True)
class Pair:
    """A currency pair ``base/quote`` named the OANDA way (``EUR_USD``)."""

    base: str
    quote: str

    @property
    def name(self) -> str:
        return f"{self.base}_{self.quote}"

    def __str__(self) -> str:
        return self.name

    @property
    def is_jpy(self) -> bool:
        return self.quote == "JPY"


def parse_pair(text: str, universe: Iterable[str] = UNIVERSE_36) -> Pair:
    """Parse ``EUR_USD`` (also ``EURUSD``, ``eur/usd``) and check it is in ``universe``.

    Raises:
        UnknownPairError: the text is not a pair of the universe; the message names it.
    """
    match = _NAME.match(str(text).strip().upper())
    allowed = set(universe)
    if match:
        name = f"{match.group(1)}_{match.group(2)}"
        if name in allowed:
            return Pair(match.group(1), match.group(2))
        flipped = f"{match.group(2)}_{match.group(1)}"
        if flipped in allowed:
            raise UnknownPairError(
                f"unknown pair {text!r}: the universe quotes it as {flipped}"
            )
    raise UnknownPairError(
        f"unknown pair {text!r}: expected one of the {len(allowed)} pairs of the "
        "universe, named like EUR_USD"
    )


def resolve_pairs(names: Iterable[str], universe: Iterable[str] = UNIVERSE_36) -> list[str]:
    """Validate a list of pair names; returns canonical names, order kept, no repeats.

    Raises:
        UnknownPairError: on the first name not in the universe.
    """
    universe = tuple(universe)
    out: list[str] = []
    for raw in names:
        name = parse_pair(raw, universe).name
        if name not in out:
            out.append(name)
    if not out:
        raise UnknownPairError("no pairs given")
    return out


def relation(pair: str | Pair, other: str | Pair) -> Relation | None:
    """The features.md category of ``other`` seen from ``pair`` (None: no shared ccy).

    For P = B/Q: ``base_base`` (O = B/x), ``quote_quote`` (O = x/Q),
    ``base_quote`` (O = x/B), ``quote_base`` (O = Q/x).
    """
    p = pair if isinstance(pair, Pair) else parse_pair(pair)
    o = other if isinstance(other, Pair) else parse_pair(other)
    if p == o:
        return None
    if o.base == p.base:
        return "base_base"
    if o.quote == p.quote:
        return "quote_quote"
    if o.quote == p.base:
        return "base_quote"
    if o.base == p.quote:
        return "quote_base"
    return None


@dataclass(frozen=True)
class Leg:
    """One leg of a synthetic cross: the pair and the sign of its log rate."""

    pair: str
    sign: int


@dataclass(frozen=True)
class Triangle:
    """P = A/C through third currency B: ln P ~ ln(A/B) + ln(B/C)."""

    pair: str
    via: str
    first: Leg
    second: Leg


def _leg(x: str, y: str, universe: set[str]) -> Leg | None:
    if f"{x}_{y}" in universe:
        return Leg(f"{x}_{y}", 1)
    if f"{y}_{x}" in universe:
        return Leg(f"{y}_{x}", -1)
    return None


def triangles(universe: Iterable[str]) -> list[Triangle]:
    """Every (pair, third currency) whose two legs exist in ``universe``."""
    names = set(universe)
    currencies = currencies_of(names)
    out: list[Triangle] = []
    for name in sorted(names):
        p = parse_pair(name)
        for b in currencies:
            if b in (p.base, p.quote):
                continue
            first, second = _leg(p.base, b, names), _leg(b, p.quote, names)
            if first and second:
                out.append(Triangle(name, b, first, second))
    return out


def currencies_of(universe: Iterable[str]) -> list[str]:
    """The currencies that appear in ``universe``, sorted."""
    return sorted({c for n in universe for c in (parse_pair(n).base, parse_pair(n).quote)})


def related_pairs(universe: Iterable[str]) -> list[tuple[str, str, Relation]]:
    """All ordered (pair, other, category) with a shared currency in ``universe``."""
    names = sorted(set(universe))
    out = []
    for a, b in combinations(names, 2):
        for p, o in ((a, b), (b, a)):
            rel = relation(p, o)
            if rel:
                out.append((p, o, rel))
    return out
