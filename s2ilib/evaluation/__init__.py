"""s2ilib.evaluation."""
