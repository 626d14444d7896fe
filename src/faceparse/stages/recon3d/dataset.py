"""The 3D reconstruction stage's dataset: canonical-layout samples → the network input, the 68 target points
(normalised to [0, 1]), the parsing map M_α for the pixel loss's attention, and — when the dataset has them
(the synthetic 3D set's ``coeffs/``) — the true coefficients, for the metrics only (the loss never sees them).

Where the targets come from (``labels/`` and ``landmarks/`` of the dataset): on the synthetic 3D set they are
the renderer's ground truth (the visible face-part map, the projected landmark vertices), because neither a
parser nor a landmark model runs at training time; a real dataset feeds M_α and N_lmk's points through the
same two folders (e.g. ``faceparse complete --dataset`` / ``predict`` outputs written there). No augmentation:
a geometric one would have to move the known geometry with it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...images import read_image, read_label
from ...models import preprocess


class Recon3dDataset(torch.utils.data.Dataset):
    def __init__(self, frame, size: int, image_dir: str | None = None):
        """``image_dir``: read ``<root>/<image_dir>/<id>.jpg`` instead of the manifest's image (``clean``)."""
        self.ids = list(frame["id"])
        self.size = int(size)
        paths = list(frame["image_path"])
        if image_dir:
            paths = [str(Path(p).parents[1] / image_dir / f"{i}.jpg") for p, i in zip(paths, self.ids)]
        self.image_paths = paths
        self.label_paths = list(frame["label_path"])
        self.points_paths = list(frame["landmarks_path"])
        self.coeff_paths = [Path(p).parents[1] / "coeffs" / f"{i}.npy" for p, i in zip(frame["image_path"], self.ids)]

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:   # nothing is drawn per epoch
        pass

    def raw(self, i: int):
        return np.asarray(read_image(self.image_paths[i]))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        img = read_image(self.image_paths[i])
        label = read_label(self.label_paths[i])
        parse = np.asarray(Image.fromarray(label).resize((self.size, self.size), Image.NEAREST), dtype=np.int64)
        if self.points_paths[i] is None:
            raise ValueError(f"{self.ids[i]}: no landmarks file: the reconstruction loss needs 68 target points")
        points = np.load(self.points_paths[i]).astype(np.float32) / np.array(img.size, np.float32)
        cp = self.coeff_paths[i]
        coeffs = np.load(cp).astype(np.float32) if cp.is_file() else np.zeros(0, np.float32)
        return {"image": preprocess(img, self.size), "points": torch.from_numpy(points), "parse": torch.from_numpy(parse),
                "coeffs": torch.from_numpy(coeffs)}
