"""Backward momentum (features.md family 2)."""

from views.common import family_view

bqx_fv = family_view("bqx")
