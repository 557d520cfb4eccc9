"""Prices indexed to the baseline close (family 1)."""

from views.common import family_view

idx_fv = family_view("idx")
