"""s2ilib.core."""
