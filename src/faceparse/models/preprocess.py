"""Image → model input, the one definition shared by training, evaluation, prediction and serving."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def preprocess(image, size: int | None = None) -> torch.Tensor:
    """uint8 RGB (H, W, 3) array or PIL image → (3, size, size) float tensor in [-1, 1].

    Resizing (bicubic, as at dataset-preparation time) happens only when ``size`` is given."""
    if isinstance(image, Image.Image):
        img = image.convert("RGB")
    else:
        arr = np.asarray(image)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise ValueError(f"image must be uint8 RGB (H, W, 3), got {arr.dtype} {arr.shape}")
        img = Image.fromarray(arr)
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    t = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float()
    return t.div_(127.5).sub_(1.0)


def to_tensor_batch(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 → (B, 3, H, W) float in [-1, 1] (the training loader's path)."""
    t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return t.div_(127.5).sub_(1.0)
