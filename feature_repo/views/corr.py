"""4-category cross-pair correlation (family 6)."""

from views.common import family_view

corr_fv = family_view("corr")
