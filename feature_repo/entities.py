"""Entities: a currency pair, joined on its OANDA id (``EUR_USD``)."""

from feast import Entity, ValueType

pair = Entity(
    name="pair",
    join_keys=["pair"],
    value_type=ValueType.STRING,
    description="Currency pair, OANDA instrument id (EUR_USD).",
)
