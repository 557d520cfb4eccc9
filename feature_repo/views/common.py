"""How the feature views are built from the family table."""

from __future__ import annotations

from datetime import timedelta

from entities import pair
from families import FAMILIES, LABELS
from feast import FeatureView, Field
from sources import SOURCES, labels_source

#: A feature row is served (and joined) only while it is this fresh: a closed market
#: (Friday 17:00 to Sunday 17:00 New York) must not present Friday's values as
#: current. Online reads also return each row's event_timestamp.
FRESHNESS = timedelta(minutes=30)
#: Labels attach to exactly the entity's bar end, never to an earlier bar.
EXACT = timedelta(microseconds=1)


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


def labels_view() -> FeatureView:
    """Forward targets: offline only, joined exactly at the entity's bar end."""
    return FeatureView(
        name="labels",
        entities=[pair],
        ttl=EXACT,
        schema=[Field(name=n, dtype=t) for n, t in LABELS["fields"].items()],
        source=labels_source,
        online=False,
        description=LABELS["description"],
        tags={"mart": LABELS["mart"], "contract": "shared/docs/features.md"},
    )
