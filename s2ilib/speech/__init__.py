"""s2ilib.data.spoken."""
