"""Compatibility: ``s2ilib.datasets`` is now :mod:`s2ilib.data.datasets` (loaders of the real and embedded layouts)."""
from s2ilib.data.datasets import *  # noqa: F401,F403
from s2ilib.data.datasets import DatasetError, ImageRecord, SpeechImageDataset, load_dataset  # noqa: F401
