"""Speck removal for predicted label maps.

A parser's per-pixel argmax leaves islands of a few pixels — a fleck of ``mouth`` between closed lips, of
``hat`` in curly hair, of ``neck_l`` on a collar — that no annotator draws and that cost a whole class in a
per-class F1 (one false pixel of a class the photo lacks makes that class's F1 0). Each connected region of a
class smaller than ``min_frac`` of the map's area takes the label most common on its border. Measured on the
four real fixture photos (issue #16, the README's "pretrained model"): at 2e-4 (52 px at 512²) it removes the
stray ``mouth`` / ``neck_l`` flecks and nothing a face part needs; at 2e-3 it starts deleting real ears.
"""
from __future__ import annotations

import cv2
import numpy as np

# Imports inside functions here: this module is on the start-up path of the command line, the page or the
# router, so heavy libraries load on first use (tests/code/test_light_imports.py)

MIN_REGION = 2e-4   # of the map's area: 52 px at 512², 13 px at 256²


def drop_specks(labels: np.ndarray, min_frac: float = MIN_REGION) -> np.ndarray:
    """A copy of the (H, W) class-id map with every region under ``min_frac`` × H × W pixels relabelled by
    its surroundings (8-connected regions; background regions too)."""
    out = np.array(labels, dtype=np.uint8, copy=True)
    min_area = float(min_frac) * out.size
    if min_area < 1:
        return out
    for c in np.unique(out).tolist():
        n, comp, stats, _ = cv2.connectedComponentsWithStats((out == c).astype(np.uint8), connectivity=8)
        for k in np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < min_area) + 1:
            _refill(out, comp, stats[k], k, c)
    return out


def labels_from_logits(logits) -> np.ndarray:
    """(B, C, H, W) logits (a torch tensor) → (B, H, W) uint8 class maps, specks dropped: the one decoding every
    predicted map goes through (photos, the endpoint, the tests' reference)."""
    import torch

    maps = logits.argmax(1).to(torch.uint8).cpu().numpy()
    return np.stack([drop_specks(m) for m in maps])


def _refill(out: np.ndarray, comp: np.ndarray, box: np.ndarray, k: int, c: int) -> None:
    """Relabel region ``k`` of ``comp`` (class ``c``, bounding ``box``) in place with its border's majority."""
    h, w = out.shape
    x0, y0 = max(0, box[0] - 1), max(0, box[1] - 1)
    x1, y1 = min(w, box[0] + box[2] + 1), min(h, box[1] + box[3] + 1)
    win = comp[y0:y1, x0:x1] == k
    ring = cv2.dilate(win.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~win
    around = out[y0:y1, x0:x1][ring]
    around = around[around != c]
    if around.size:
        out[y0:y1, x0:x1][win] = np.bincount(around).argmax()
