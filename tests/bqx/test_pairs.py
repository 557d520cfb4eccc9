import pytest

from bqx.pairs import (
    UNIVERSE_28,
    UNIVERSE_36,
    UnknownPairError,
    currencies_of,
    parse_pair,
    related_pairs,
    relation,
    resolve_pairs,
    triangles,
)


def test_universes_match_the_contract():
    assert len(UNIVERSE_28) == 28 and len(UNIVERSE_36) == 36
    assert currencies_of(UNIVERSE_28) == sorted(
        ["EUR", "GBP", "AUD", "NZD", "USD", "CAD", "CHF", "JPY"]
    )
    # every pair of 8 currencies appears exactly once, in one orientation
    unordered = {frozenset(p.split("_")) for p in UNIVERSE_28}
    assert len(unordered) == 28


@pytest.mark.parametrize("text", ["EUR_USD", "eur_usd", "EURUSD", "EUR/USD"])
def test_parse_accepts_common_spellings(text):
    assert parse_pair(text).name == "EUR_USD"


@pytest.mark.parametrize("text", ["USD_EUR", "XAU_USD", "EUR", "", "EUR_USDX"])
def test_parse_refuses_and_names_the_input(text):
    with pytest.raises(UnknownPairError, match="unknown pair"):
        parse_pair(text)
    with pytest.raises(UnknownPairError) as info:
        parse_pair(text)
    assert repr(text) in str(info.value)


def test_flipped_pair_message_names_the_market_convention():
    with pytest.raises(UnknownPairError, match="EUR_USD"):
        parse_pair("USD_EUR")


def test_sgd_pairs_only_in_the_extended_universe():
    assert parse_pair("USD_SGD").name == "USD_SGD"
    with pytest.raises(UnknownPairError):
        parse_pair("USD_SGD", UNIVERSE_28)


def test_resolve_keeps_order_and_drops_repeats():
    assert resolve_pairs(["usd_jpy", "EUR_USD", "USDJPY"]) == ["USD_JPY", "EUR_USD"]
    with pytest.raises(UnknownPairError):
        resolve_pairs([])


@pytest.mark.parametrize(
    "other,expected",
    [
        ("EUR_GBP", "base_base"),  # O = B/x
        ("GBP_USD", "quote_quote"),  # O = x/Q
        ("NZD_USD", "quote_quote"),
        ("USD_JPY", "quote_base"),  # O = Q/x
        ("USD_CAD", "quote_base"),
        ("AUD_NZD", None),
        ("EUR_USD", None),
    ],
)
def test_relation_categories_for_eur_usd(other, expected):
    assert relation("EUR_USD", other) == expected


def test_base_quote_category():
    # P = GBP/USD, O = EUR/GBP: O = x/B
    assert relation("GBP_USD", "EUR_GBP") == "base_quote"


def test_related_pairs_are_symmetric_in_count():
    rel = related_pairs(UNIVERSE_28)
    # each pair shares a currency with 6 + 6 = 12 others
    assert len(rel) == 28 * 12


def test_triangles_of_the_majors():
    tris = triangles(UNIVERSE_28)
    assert len(tris) == 28 * 6  # every third currency closes a triangle
    eur_jpy = {t.via: t for t in tris if t.pair == "EUR_JPY"}
    usd = eur_jpy["USD"]
    assert (usd.first.pair, usd.first.sign) == ("EUR_USD", 1)
    assert (usd.second.pair, usd.second.sign) == ("USD_JPY", 1)
    gbp = eur_jpy["GBP"]
    assert (gbp.first.pair, gbp.first.sign) == ("EUR_GBP", 1)
    aud_usd = {t.via: t for t in tris if t.pair == "AUD_USD"}["NZD"]
    assert (aud_usd.first.pair, aud_usd.first.sign) == ("AUD_NZD", 1)
    assert (aud_usd.second.pair, aud_usd.second.sign) == ("NZD_USD", 1)
    chf = {t.via: t for t in tris if t.pair == "EUR_USD"}["CHF"]
    assert (chf.second.pair, chf.second.sign) == ("USD_CHF", -1)


def test_triangles_of_a_subset_without_any():
    assert triangles(["EUR_USD", "GBP_USD", "USD_JPY"]) == []
