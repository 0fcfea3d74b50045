"""s2ilib.models."""
