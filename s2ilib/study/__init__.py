"""s2ilib.study.stages."""
