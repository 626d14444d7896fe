"""The training / validation dataset: canonical-layout samples → model inputs, label queries, edge masks.

Randomness is *stateless*: the augmentation and the query-pixel sampling of sample ``i`` in epoch ``e``
are drawn from a seed derived from ``(train.seed, e, i)`` only. So a sample looks the same whichever
rank or DataLoader worker loads it, in whatever order, and a resumed run needs no augmentation RNG
state — the property that makes 1-process and N-process runs comparable and resume bitwise exact.

albumentations 2.x draws from the Compose's own ``random_generator`` (numpy Generator) and ``py_random``
(random.Random), not from the global numpy / python RNGs; ``Compose.set_random_seed`` re-seeds both
(and propagates to every transform), which is what is done per sample here.
"""
from __future__ import annotations

from typing import Any, Mapping

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..defaults import fill_defaults
from ..images import read_image, read_label
from ..losses import edge_mask
from ..models import preprocess
from ..schema import Augment


def derive_seed(*parts: int) -> int:
    """A 32-bit seed from integer parts (numpy SeedSequence: well mixed, platform independent)."""
    return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0])


def _range(v, name: str) -> tuple[float, float]:
    if isinstance(v, (int, float)):
        return (-float(v), float(v))
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return (float(v[0]), float(v[1]))
    raise ValueError(f"train.augment.{name} must be a number or a [low, high] pair, got {v!r}")


def build_augment(cfg: Mapping[str, Any] | None, input_size: int):
    """The paper's augmentation with albumentations, or None when disabled.

    Geometric (probability p): Affine(rotate ±rotate°, shear ±shear°, scale range, fit_output) on image
    (bilinear) and label (nearest), then pad (random position) / random crop back to input_size — so
    scaling down shrinks the face inside the frame and scaling up crops a random window (translation).
    Photometric (probability p, independently): ColorJitter(brightness, contrast, saturation, hue). Keys
    left out: their defaults (faceparse.schema.Augment)."""
    cfg = fill_defaults(Augment, cfg)
    if not cfg["enabled"]:
        return None
    p = float(cfg["p"])
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"train.augment.p must be in [0, 1], got {p}")
    hue = cfg["hue"]
    hue = (-float(hue), float(hue)) if isinstance(hue, (int, float)) else _range(hue, "hue")
    return A.Compose([
        A.Affine(scale=_range(cfg["scale"], "scale"), rotate=_range(cfg["rotate"], "rotate"),
                 shear=_range(cfg["shear"], "shear"), interpolation=cv2.INTER_LINEAR,
                 mask_interpolation=cv2.INTER_NEAREST, fit_output=True, border_mode=cv2.BORDER_CONSTANT,
                 fill=0, fill_mask=0, p=p),
        A.PadIfNeeded(min_height=input_size, min_width=input_size, position="random",
                      border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0),
        A.RandomCrop(height=input_size, width=input_size),
        A.ColorJitter(brightness=_range(cfg["brightness"], "brightness"), contrast=_range(cfg["contrast"], "contrast"),
                      saturation=_range(cfg["saturation"], "saturation"), hue=hue, p=p),
    ], seed=0)


def load_pair(image_path: str, label_path: str) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(read_image(image_path), dtype=np.uint8), read_label(label_path)


def resize_pair(image: np.ndarray, label: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    if image.shape[:2] != (size, size):
        interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_CUBIC
        image = cv2.resize(image, (size, size), interpolation=interp)
    return image, resize_label(label, size)


def resize_label(label: np.ndarray, size: int) -> np.ndarray:
    """Nearest neighbour on pixel centres (INTER_NEAREST_EXACT: the grid LIIF's coordinates assume)."""
    if label.shape[:2] == (size, size):
        return label
    return cv2.resize(label, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)


class EpochSeeded(Dataset):
    """What the training loop needs of every stage's dataset: ``set_epoch`` (the stateless per-(seed, epoch,
    index) randomness reads ``self.epoch``), a length (``image_paths``), and ``cached`` decoding."""

    seed: int = 0
    epoch: int = 0
    image_paths: list
    cache_bytes: int = 512 << 20   # per dataset object (and per loader worker)

    def cached(self, key, load):
        """``load()``'s tuple of arrays, kept (read-only) while the cache holds under ``cache_bytes``: a small
        dataset is decoded once instead of every epoch (JPEG + PNG decoding and resizing are ~3 ms a sample,
        a quarter of a landmark training step's time on 2 cores); a large one is read from disk as before."""
        store = self.__dict__.setdefault("_cache", {})
        if key in store:
            return store[key]
        value = load()
        size = sum(a.nbytes for a in value if isinstance(a, np.ndarray))
        used = self.__dict__.get("_cache_used", 0)
        if used + size <= self.cache_bytes:
            for a in value:
                if isinstance(a, np.ndarray):
                    a.setflags(write=False)    # shared by every epoch: an in-place edit would fail, not leak
            store[key], self._cache_used = value, used + size
        return value

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.image_paths)


class FaceParsingDataset(EpochSeeded):
    """Items: ``image`` (3, S, S) float in [-1, 1] (``faceparse.models.preprocess``), ``labels`` (Q,) int64,
    ``edges`` (Q,) bool, ``qidx`` (Q,) int64 flat indices into the out_size × out_size grid, ``index``.

    ``sample_queries`` > 0: Q random output pixels (without replacement) per image, the edge mask
    computed on the full label map first; 0: all out_size² pixels in raster order."""

    def __init__(self, frame, input_size: int, out_size: int, num_classes: int, edge_kernel: int = 3,
                 augment: Mapping[str, Any] | None = None, sample_queries: int = 0, seed: int = 0):
        self.image_paths = list(frame["image_path"])
        self.label_paths = list(frame["label_path"])
        self.ids = [str(i) for i in frame["id"]]
        self.input_size = int(input_size)
        self.out_size = int(out_size)
        self.num_classes = int(num_classes)
        self.edge_kernel = int(edge_kernel)
        self.augment = build_augment(augment, self.input_size) if augment is not None else None
        self.sample_queries = int(sample_queries or 0)
        if self.sample_queries < 0:
            raise ValueError(f"train.sample_queries must be >= 0, got {sample_queries}")
        if self.sample_queries > self.out_size ** 2:
            raise ValueError(f"train.sample_queries={sample_queries} exceeds the {self.out_size}² output pixels")
        self.seed = int(seed)
        self.epoch = 0

    def raw(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Image (input_size² uint8 RGB) and label (out_size² uint8), unaugmented: for plots."""
        image, label = load_pair(self.image_paths[i], self.label_paths[i])
        image, label = resize_pair(image, label, self.input_size)
        return image, resize_label(label, self.out_size)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image, label = self.cached(i, lambda: resize_pair(*load_pair(self.image_paths[i], self.label_paths[i]),
                                                          self.input_size))
        if self.augment is not None:
            self.augment.set_random_seed(derive_seed(self.seed, self.epoch, i, 0xA6))
            out = self.augment(image=image, mask=label)
            image, label = out["image"], out["mask"]
        label = resize_label(np.ascontiguousarray(label), self.out_size)
        if label.size and int(label.max()) >= self.num_classes:
            raise ValueError(f"{self.label_paths[i]}: class id {int(label.max())} outside the "
                             f"{self.num_classes}-class table")
        lab = torch.from_numpy(label.astype(np.int64))
        edges = edge_mask(lab.unsqueeze(0), self.edge_kernel)[0].reshape(-1)
        lab = lab.reshape(-1)
        n = self.out_size ** 2
        if self.sample_queries:
            rng = np.random.default_rng(derive_seed(self.seed, self.epoch, i, 0x51))
            qidx = torch.from_numpy(rng.choice(n, self.sample_queries, replace=False).astype(np.int64))
            lab, edges = lab[qidx], edges[qidx]
        else:
            qidx = torch.arange(n, dtype=torch.int64)
        return {"image": preprocess(np.ascontiguousarray(image)), "labels": lab, "edges": edges, "qidx": qidx,
                "index": i}
