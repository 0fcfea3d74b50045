"""Image tensors for the models: a dataset's images as uint8 batches at a resolution and view."""
from __future__ import annotations

import numpy as np


def load_images_uint8(ds, indices, size: int, bbox_crop: bool = False):
    """uint8 tensor (n, 3, size, size) of the dataset's images at ``indices``; with ``bbox_crop``
    each image is first cropped around its bounding box (images without one are kept whole)."""
    import torch

    from s2ilib.data.datasets import load_image

    arrays = [np.asarray(load_image(ds.images[i], size, bbox_crop=bbox_crop), dtype=np.uint8) for i in indices]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
