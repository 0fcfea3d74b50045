"""Compatibility: ``s2ilib.datasets`` is now :mod:`s2ilib.data.datasets` (loaders of the real and embedded layouts)."""
from s2ilib.data.datasets import (DatasetError, ImageRecord, SpeechImageDataset, bbox_crop_box, detect_layout,
                                  featurize_wavs, load_cub, load_dataset, load_image, load_oxford, load_places)

__all__ = ["DatasetError", "ImageRecord", "SpeechImageDataset", "bbox_crop_box", "detect_layout", "featurize_wavs",
           "load_cub", "load_dataset", "load_image", "load_oxford", "load_places"]
