"""Face-parsing metrics as the field reports them: one confusion matrix summed over the whole test set,
per-class F1 = 2·TP / (|gt| + |pred|) and IoU = TP / (|gt| + |pred| − TP), means over the
non-background classes, and (Helen) merged groups.

A class absent from both truth and prediction has 0/0: its F1 / IoU is NaN and it is left out of the
means (it says nothing about the model), instead of counting as 0 or 1.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .labels import LabelTable


class Confusion:
    """Accumulates a (C, C) matrix, rows = truth, cols = prediction, from numpy arrays or torch tensors (counted
    where they live, so a GPU's labels stay on it; no torch import here: the router scores agreement with it)."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred, target) -> "Confusion":
        pred, target = _flat(pred), _flat(target)
        if pred.shape != target.shape:
            raise ValueError(f"prediction and truth differ in size: {pred.shape[0]} vs {target.shape[0]}")
        n = self.num_classes
        for name, t in (("prediction", pred), ("truth", target)):
            if t.shape[0] and (int(t.min()) < 0 or int(t.max()) >= n):
                raise ValueError(f"{name} has class ids outside 0..{n - 1}")
        idx = target * n + pred
        counts = idx.bincount(minlength=n * n).cpu().numpy() if hasattr(idx, "bincount") else \
            np.bincount(idx, minlength=n * n)
        self.matrix += counts.reshape(n, n)
        return self

    def merge(self, other: "Confusion") -> None:
        self.matrix += other.matrix

    def present_miou(self) -> float | None:
        """Mean IoU over the classes present in truth or prediction, background included (None: nothing
        counted) — the agreement of two maps, and SPADE's semantic check."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - np.diag(self.matrix)
        present = union > 0
        return float((tp[present] / union[present]).mean()) if present.any() else None


def _flat(x):
    """Class ids as one flat int64 vector: a torch tensor stays a tensor, anything else becomes numpy."""
    if hasattr(x, "bincount"):
        return x.reshape(-1).long()
    return np.asarray(x).reshape(-1).astype(np.int64)


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def _nanmean(values) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def constant_f1(matrix: np.ndarray, table: LabelTable, cls: str = "skin") -> float:
    """Mean F1 (as ``scores`` takes it) of the trivial parser that answers ``cls`` at every pixel, on the truth
    this confusion matrix counted: the floor a trained parser must clear by a margin."""
    if cls not in table.classes:
        return math.nan
    m = np.asarray(matrix, dtype=np.float64)
    constant = np.zeros_like(m)
    constant[:, table.index(cls)] = m.sum(1)
    return scores(constant, table)["mean_f1"]


def scores(matrix: np.ndarray, table: LabelTable) -> dict[str, Any]:
    """Per-class F1 / IoU, mean F1 / mIoU over non-background classes, pixel accuracy, merged groups."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (table.num_classes, table.num_classes):
        raise ValueError(f"confusion matrix is {m.shape}, the {table.name} table has {table.num_classes} classes")
    tp, gt, pred = np.diag(m), m.sum(1), m.sum(0)
    f1 = {c: _ratio(2 * tp[i], gt[i] + pred[i]) for i, c in enumerate(table.classes)}
    iou = {c: _ratio(tp[i], gt[i] + pred[i] - tp[i]) for i, c in enumerate(table.classes)}
    fg = table.classes[1:]
    out: dict[str, Any] = {
        "mean_f1": _nanmean(f1[c] for c in fg),
        "miou": _nanmean(iou[c] for c in fg),
        "pixel_acc": _ratio(tp.sum(), m.sum()),
        "f1": f1,
        "iou": iou,
    }
    groups = {}
    for name, members in table.groups.items():
        idx = [table.index(c) for c in members]
        # A merged group is one class: TP of the merged class counts confusions inside the group too.
        g_tp = m[np.ix_(idx, idx)].sum()
        groups[name] = _ratio(2 * g_tp, m[idx].sum() + m[:, idx].sum())
    if groups:
        out["groups_f1"] = groups
    return out
