"""The de-occlusion (FISN) stage's dataset: canonical-layout samples with complete ground truth → generator
input, source / target maps, the target image and the occluded face region.

Files read per sample ``<id>`` of the dataset root: ``images/`` (the photo as the camera saw it), ``labels/``
(the visible map: an occluder shows as background, hair or glasses — what a perfect parser would answer,
i.e. the ground-truth M_α), ``complete/`` (the map without occluders: the ground-truth M_γ), ``clean/`` (the
face rendered without its occluders; absent for unoccluded samples, whose clean image is the photo) and
``occlusion/`` (the occluders' pixels). A sample without ``complete/`` uses its label map there (a real
dataset without occlusion ground truth: only ``paper`` mode makes sense on it).

Modes (params ``fisn.train.mode``):

- ``supervised``: image = the photo (occluders and all), source map = ``labels/`` (M_α), target map =
  ``complete/`` (M_γ), target image = ``clean/`` — the synthetic occluded input → clean target, every sample
  (an unoccluded one teaches the identity: its maps agree and its target is its input);
- ``paper``: self-reconstruction as SEAN / FISN train on CelebAMask-HQ: image = target = the clean face
  (the photo when unoccluded), both maps = ``complete/``; at inference the source map becomes M_α and the
  target map M_γ.

``occluded_only`` keeps the samples with a clean render (the occluded ones): ``fisn.train.occluded_only`` for
training; validation always uses it, scoring the task itself on supervised items of the occluded samples.

Everything is resized to ``size``² once (images INTER_AREA down / INTER_CUBIC up as the parser's dataset does,
maps and masks nearest); no augmentation (a face map's left / right classes would have to be swapped under a
flip, and a CPU demo run is a few epochs).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...images import read_image, read_label
from ...models import preprocess
from ...training.dataset import EpochSeeded, resize_label
from ..completion.algorithm import Settings
from ..landmarks.dataset import resize_image

MODES = ("supervised", "paper")


def face_ids() -> np.ndarray:
    return Settings().face_ids()


class FisnDataset(EpochSeeded):
    """Items: ``image`` (3, S, S) generator input in [-1, 1]; ``source`` / ``target`` (S, S) int64 maps;
    ``real`` (3, S, S) the image the generator should produce; ``region`` (S, S) bool: the occluded face
    pixels (occluder ∧ a face class in the complete map; all False when unoccluded); ``occluder`` (S, S) bool:
    every occluder pixel (the occlusion head's truth); ``index``."""

    def __init__(self, frame, root, size: int, mode: str = "supervised", occluded_only: bool = False,
                 seed: int = 0):
        if mode not in MODES:
            raise ValueError(f"fisn.train.mode must be one of {MODES}, got {mode!r}")
        self.root, self.size, self.mode, self.seed, self.epoch = Path(root), int(size), mode, int(seed), 0
        ids = [str(i) for i in frame["id"]]
        paths = list(frame["image_path"])
        labels = list(frame["label_path"])
        keep = [k for k, sid in enumerate(ids) if not occluded_only or (self.root / "clean" / f"{sid}.jpg").is_file()]
        self.ids = [ids[k] for k in keep]
        self.image_paths = [paths[k] for k in keep]
        self.label_paths = [labels[k] for k in keep]
        self.face = face_ids()

    def raw(self, i: int) -> dict[str, np.ndarray]:
        """uint8 arrays at size²: image, clean, label (visible map), complete, occluder (bool), region (bool)."""
        sid = self.ids[i]
        image = resize_image(np.asarray(read_image(self.image_paths[i]), np.uint8), self.size)
        clean_path = self.root / "clean" / f"{sid}.jpg"
        clean = resize_image(np.asarray(read_image(clean_path), np.uint8), self.size) if clean_path.is_file() else image
        label = resize_label(read_label(self.label_paths[i]), self.size)
        cpath, opath = self.root / "complete" / f"{sid}.png", self.root / "occlusion" / f"{sid}.png"
        complete = resize_label(read_label(cpath), self.size) if cpath.is_file() else label
        occluder = resize_label(read_label(opath), self.size) > 0 if opath.is_file() else np.zeros_like(label, bool)
        region = occluder & np.isin(complete, self.face)
        return {"image": image, "clean": clean, "label": label, "complete": complete, "occluder": occluder,
                "region": region}

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        r = self.raw(i)
        if self.mode == "paper":
            image, source, target, real = r["clean"], r["complete"], r["complete"], r["clean"]
        else:
            image, source, target, real = r["image"], r["label"], r["complete"], r["clean"]
        return {"image": preprocess(np.ascontiguousarray(image)),
                "source": torch.from_numpy(source.astype(np.int64)),
                "target": torch.from_numpy(target.astype(np.int64)),
                "real": preprocess(np.ascontiguousarray(real)),
                "region": torch.from_numpy(r["region"]), "occluder": torch.from_numpy(r["occluder"]), "index": i}
