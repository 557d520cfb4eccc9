"""Calendar and gap features (family 9)."""

from views.common import family_view

calendar_fv = family_view("calendar")
