"""Feature views, one module per family."""
