"""Triangulation error (family 8)."""

from views.common import family_view

tri_fv = family_view("tri")
