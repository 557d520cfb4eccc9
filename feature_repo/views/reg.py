"""Rolling polynomial regression, exact windowed sums (family 5)."""

from views.common import family_view

reg_fv = family_view("reg")
