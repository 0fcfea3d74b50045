"""s2ilib.training."""
