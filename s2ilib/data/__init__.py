"""s2ilib.data."""
