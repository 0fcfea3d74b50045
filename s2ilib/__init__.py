"""s2ilib: direct speech-to-image translation (Li et al., IEEE JSTSP 2020), a reproducible study."""
__version__ = "0.1.0"
