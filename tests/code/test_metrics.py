import math

import numpy as np
import pytest
import torch

from faceparse.labels import CELEBAMASK_HQ, HELEN, LabelTable
from faceparse.metrics import Confusion, scores

T4 = LabelTable("t4", ("background", "a", "b", "c"))


def test_confusion_matches_hand_count_and_absent_class():
    gt = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])
    pr = torch.tensor([0, 1, 1, 1, 2, 2, 0, 0])
    cm = Confusion(4)
    cm.update(pr[:4], gt[:4])
    cm.update(pr[4:], gt[4:])  # accumulated over the dataset, not averaged per image
    expected = np.array([[2, 1, 0, 0],
                         [0, 2, 1, 0],
                         [1, 0, 1, 0],
                         [0, 0, 0, 0]])
    assert (cm.matrix == expected).all()
    s = scores(cm.matrix, T4)
    # a: TP 2, |gt| 3, |pred| 3 → F1 4/6, IoU 2/4;  b: TP 1, |gt| 2, |pred| 2 → F1 2/4, IoU 1/3
    assert s["f1"]["a"] == pytest.approx(4 / 6)
    assert s["f1"]["b"] == pytest.approx(0.5)
    assert s["iou"]["a"] == pytest.approx(0.5)
    assert s["iou"]["b"] == pytest.approx(1 / 3)
    assert math.isnan(s["f1"]["c"])  # absent from truth and prediction
    assert s["mean_f1"] == pytest.approx((4 / 6 + 0.5) / 2)  # c excluded, background excluded
    assert s["miou"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert s["pixel_acc"] == pytest.approx(5 / 8)


def test_class_predicted_but_absent_in_truth_scores_zero():
    cm = Confusion(4)
    cm.update(torch.tensor([3, 1]), torch.tensor([0, 1]))
    s = scores(cm.matrix, T4)
    assert s["f1"]["c"] == 0.0 and s["f1"]["a"] == 1.0
    assert s["mean_f1"] == pytest.approx(0.5)


def test_helen_merged_groups():
    n = HELEN.num_classes
    m = np.zeros((n, n), dtype=np.int64)
    le, re = HELEN.index("l_eye"), HELEN.index("r_eye")
    m[le, re] = 10  # left/right confusion is still a correct "eyes"
    m[le, le] = 10
    m[re, 0] = 5    # missed eye pixels
    s = scores(m, HELEN)
    # eyes: TP 20, |gt| 25, |pred| 20 → 40/45
    assert s["groups_f1"]["eyes"] == pytest.approx(40 / 45)
    assert set(s["groups_f1"]) == {"eyes", "brows", "mouth", "overall"}


def test_bad_inputs():
    cm = Confusion(3)
    with pytest.raises(ValueError, match="outside"):
        cm.update(torch.tensor([5]), torch.tensor([0]))
    with pytest.raises(ValueError, match="size"):
        cm.update(torch.tensor([1, 2]), torch.tensor([0]))
    with pytest.raises(ValueError, match="19 classes"):
        scores(np.zeros((3, 3)), CELEBAMASK_HQ)
