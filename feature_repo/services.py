"""Feature services: versioned, never edited in place."""

from feast import FeatureService
from views.bqx import bqx_fv

FEATURE_VIEWS = [bqx_fv]

online_v1 = FeatureService(
    name="online_v1",
    features=FEATURE_VIEWS,
    description="Serving: the latest features of every pair (no labels).",
)
