"""Feature services: versioned, never edited in place."""

from feast import FeatureService
from views.bqx import bqx_fv
from views.calendar import calendar_fv
from views.corr import corr_fv
from views.idx import idx_fv
from views.labels import labels_fv
from views.reg import reg_fv
from views.strength import strength_fv
from views.tri import tri_fv
from views.volatility import volatility_fv
from views.vwap import vwap_fv

FEATURE_VIEWS = [
    idx_fv, bqx_fv, volatility_fv, vwap_fv, reg_fv, corr_fv, strength_fv, tri_fv,
    calendar_fv,
]  # fmt: skip

online_v1 = FeatureService(
    name="online_v1",
    features=FEATURE_VIEWS,
    description="Serving: the latest features of every pair (no labels).",
)
tft_v1 = FeatureService(
    name="tft_v1",
    features=[*FEATURE_VIEWS, labels_fv],
    description="Training: every feature family plus the forward labels.",
)
