"""Imports every selection method so that each registers itself. A new method: one file, one line here."""
from . import bids, influence, learning_percentage, rds, simple  # noqa: F401
