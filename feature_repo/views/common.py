"""How every feature view is built from the family table."""

from __future__ import annotations

from datetime import timedelta

from entities import pair
from families import FAMILIES
from feast import FeatureView, Field
from sources import SOURCES

#: Online values older than this are not served: a closed market (Friday 17:00 to
#: Sunday 17:00 New York) must not present Friday's values as current.
FRESHNESS = timedelta(minutes=30)


def family_view(family: str) -> FeatureView:
    """The feature view of one family of features.md."""
    spec = FAMILIES[family]
    return FeatureView(
        name=family,
        entities=[pair],
        ttl=FRESHNESS,
        schema=[Field(name=n, dtype=t) for n, t in spec["fields"].items()],
        source=SOURCES[family],
        online=True,
        description=spec["description"],
        tags={"mart": spec["mart"], "contract": "shared/docs/features.md"},
    )
