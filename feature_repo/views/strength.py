"""Currency strength (family 7)."""

from views.common import family_view

strength_fv = family_view("strength")
