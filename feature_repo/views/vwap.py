"""VWAP and deviation (family 4)."""

from views.common import family_view

vwap_fv = family_view("vwap")
