"""Forward-return targets and their naive baselines (never materialized online)."""

from views.common import labels_view

labels_fv = labels_view()
