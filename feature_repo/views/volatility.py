"""Return volatility and range (family 3)."""

from views.common import family_view

volatility_fv = family_view("volatility")
