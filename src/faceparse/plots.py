"""Report figures shared by training (MLflow artifacts) and evaluation (metrics/plots): per-class F1 bars,
a row-normalised confusion matrix, and colour overlays of label maps on images.

matplotlib runs with the non-interactive Agg backend (no display needed); figures are closed after saving.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

# Imports inside functions here: this module is on the start-up path of the command line, the page or the
# router, so heavy libraries load on first use (tests/code/test_light_imports.py)



def finish(fig, path: Path) -> Path:
    """Lay the figure out, write it (110 dpi) and close it; returns its path."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path

def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _prepare(path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def f1_bar(scores: Mapping[str, float], path: str | os.PathLike, title: str | None = None,
           mean: float | None = None, ylabel: str = "F1") -> Path:
    """Horizontal bar per class (NaN = class absent from truth and prediction: drawn as an empty,
    labelled bar); ``mean`` draws a dashed reference line."""
    plt = _plt()
    p = _prepare(path)
    names = list(scores)
    vals = [float(scores[n]) if scores[n] is not None else math.nan for n in names]
    fig, ax = plt.subplots(figsize=(6.0, 0.28 * len(names) + 1.2))
    y = np.arange(len(names))
    shown = [0.0 if math.isnan(v) else v for v in vals]
    ax.barh(y, shown, color="#4c72b0")
    for yi, v in zip(y, vals):
        ax.text(min(v, 1.0) + 0.01 if not math.isnan(v) else 0.01, yi, "n/a" if math.isnan(v) else f"{v:.3f}",
                va="center", fontsize=7)
    if mean is not None and not math.isnan(mean):
        ax.axvline(mean, color="#c44e52", ls="--", lw=1, label=f"mean {mean:.3f}")
        ax.legend(loc="lower right", fontsize=7)
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    return finish(fig, p)


def normalise_rows(matrix) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    rows = m.sum(1, keepdims=True)
    return np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)


def confusion_image(matrix, classes: Sequence[str], path: str | os.PathLike, title: str | None = None,
                    normalize: bool = True) -> Path:
    """Confusion matrix (rows = truth, columns = prediction), row-normalised by default."""
    plt = _plt()
    p = _prepare(path)
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(classes):
        raise ValueError(f"confusion matrix must be ({len(classes)}, {len(classes)}), got {m.shape}")
    shown = normalise_rows(m) if normalize else m.astype(np.float64)
    n = len(classes)
    side = max(4.0, 0.35 * n + 1.5)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(n), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                v = shown[i, j]
                if (v >= 0.01) if normalize else (v > 0):
                    ax.text(j, i, f"{v:.2f}" if normalize else f"{int(v)}", ha="center", va="center",
                            fontsize=5, color="white" if normalize and v > 0.5 else "black")
    ax.set_title(title or ("confusion (row-normalised)" if normalize else "confusion"), fontsize=9)
    return finish(fig, p)


def colorize(label, palette) -> np.ndarray:
    """(H, W) class ids → (H, W, 3) uint8 colours."""
    lab = np.asarray(label)
    pal = np.asarray(palette, dtype=np.uint8)
    if lab.ndim != 2:
        raise ValueError(f"label must be (H, W), got {lab.shape}")
    if lab.size and int(lab.max()) >= len(pal):
        raise ValueError(f"label has class id {int(lab.max())} but the palette has {len(pal)} colours")
    return pal[lab.astype(np.int64)]


def overlay(image, label, palette, alpha: float = 0.5) -> np.ndarray:
    """Blend the colourised label map over an RGB uint8 image; background (class 0) left as is.
    A label of another size is resized (nearest) to the image."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB (H, W, 3), got {img.dtype} {img.shape}")
    lab = np.asarray(label)
    if lab.shape != img.shape[:2]:
        import cv2

        lab = cv2.resize(lab.astype(np.uint8), (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST_EXACT)
    colour = colorize(lab, palette).astype(np.float32)
    out = img.astype(np.float32)
    fg = lab > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colour[fg]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def overlay_grid(images: Sequence[np.ndarray], truths: Sequence[np.ndarray], preds: Sequence[np.ndarray],
                 palette, path: str | os.PathLike, titles: Sequence[str] | None = None, alpha: float = 0.5) -> Path:
    """One row per sample: image | truth overlay | prediction overlay, saved as one PNG."""
    plt = _plt()
    p = _prepare(path)
    n = len(images)
    if not (n == len(truths) == len(preds)) or n == 0:
        raise ValueError(f"overlay_grid needs equal, non-zero numbers of images/truths/preds, got "
                         f"{len(images)}/{len(truths)}/{len(preds)}")
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n), squeeze=False)
    for i in range(n):
        panels = (np.asarray(images[i]), overlay(images[i], truths[i], palette, alpha),
                  overlay(images[i], preds[i], palette, alpha))
        for j, (ax, im, name) in enumerate(zip(axes[i], panels, ("image", "truth", "prediction"))):
            ax.imshow(im)
            ax.set_axis_off()
            head = name if titles is None or j else f"{titles[i]}"
            ax.set_title(head, fontsize=7)
    return finish(fig, p)


def completion_sheet(image, maps, palette, path: str | os.PathLike, truth=None, title: str | None = None,
                     rows: Sequence | None = None) -> Path:
    """Map completion at a glance, one row per image: photo | M_α | M_β | M_γ | occlusion mask [| truth].
    ``rows`` (several images) is a list of (image, maps, truth, title) tuples; else the single one given."""
    plt = _plt()
    p = _prepare(path)
    rows = list(rows) if rows is not None else [(image, maps, truth, title)]
    cols = 6 if any(r[2] is not None for r in rows) else 5
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.1 * cols, 2.2 * len(rows)), squeeze=False)
    for ax_row, (img, m, gt, head) in zip(axes, rows):
        img = np.asarray(img)
        if img.shape[:2] != m.alpha.shape:
            from PIL import Image

            img = np.asarray(Image.fromarray(img).resize(m.alpha.shape[::-1], Image.BICUBIC))
        mask = img.copy()
        mask[m.occlusion] = (0.4 * mask[m.occlusion] + 0.6 * np.array([255, 0, 255])).astype(np.uint8)
        panels = [(img, head or "photo"), (colorize(m.alpha, palette), "M_alpha (parser)"),
                  (colorize(m.beta, palette), "M_beta (landmarks)"), (colorize(m.gamma, palette), "M_gamma (Alg. 1)"),
                  (mask, "occlusion mask")]
        if cols == 6:
            panels.append((colorize(gt, palette) if gt is not None else np.zeros_like(img), "truth (complete)"))
        for ax, (im, name) in zip(ax_row, panels):
            ax.imshow(im)
            ax.set_axis_off()
            ax.set_title(name, fontsize=7)
    return finish(fig, p)
