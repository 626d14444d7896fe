"""Fast unit tests of faceparse.metrics with hand-computed expectations (targets of `make mutation`)."""
import math

import numpy as np
import pytest
import torch

from faceparse.labels import CELEBAMASK_HQ, LabelTable
from faceparse.metrics import Confusion, constant_f1, scores

T3 = LabelTable("t3", ("background", "a", "b"))
G4 = LabelTable("g4", ("background", "a", "b", "c"), groups={"ab": ("a", "b"), "c_only": ("c",)})


def test_confusion_starts_empty_with_the_right_shape_and_dtype():
    cm = Confusion(3)
    assert cm.num_classes == 3
    assert cm.matrix.shape == (3, 3) and cm.matrix.dtype == np.int64
    assert cm.matrix.sum() == 0


def test_update_rows_are_truth_cols_are_prediction_and_accepts_2d_maps():
    cm = Confusion(3)
    # truth 0 predicted as 2 (twice), truth 1 predicted as 1, truth 2 predicted as 0
    pred = torch.tensor([[2, 2], [1, 0]])
    target = torch.tensor([[0, 0], [1, 2]])
    cm.update(pred, target)
    assert cm.matrix.tolist() == [[0, 0, 2],
                                  [0, 1, 0],
                                  [1, 0, 0]]


def test_update_keeps_full_shape_when_the_highest_class_is_absent():
    cm = Confusion(4)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 0]))  # only cells (0,0) and (0,1): bincount needs minlength
    assert cm.matrix.shape == (4, 4)
    assert cm.matrix[0].tolist() == [1, 1, 0, 0] and cm.matrix[1:].sum() == 0


def test_update_accepts_numpy_and_int8_inputs():
    cm = Confusion(3)
    cm.update(np.array([2, 1], dtype=np.uint8), np.array([2, 2], dtype=np.uint8))
    assert cm.matrix[2].tolist() == [0, 1, 1]


def test_update_accumulates_and_merge_adds():
    a, b = Confusion(2), Confusion(2)
    a.update(torch.tensor([1, 1]), torch.tensor([1, 0]))
    a.update(torch.tensor([0]), torch.tensor([0]))
    assert a.matrix.tolist() == [[1, 1], [0, 1]]
    b.update(torch.tensor([0, 0, 0]), torch.tensor([1, 1, 0]))
    a.merge(b)
    assert a.matrix.tolist() == [[2, 1], [2, 1]]
    assert b.matrix.tolist() == [[1, 0], [2, 0]]  # the merged-in matrix is left as it was


def test_update_range_checks_are_exact_at_the_boundaries():
    cm = Confusion(3)
    cm.update(torch.tensor([0, 2]), torch.tensor([2, 0]))  # 0 and n-1 are valid
    assert cm.matrix[2, 0] == 1 and cm.matrix[0, 2] == 1
    with pytest.raises(ValueError, match=r"^prediction has class ids outside 0\.\.2$"):
        cm.update(torch.tensor([3]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"^prediction has class ids outside 0\.\.2$"):
        cm.update(torch.tensor([-1]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"^truth has class ids outside 0\.\.2$"):
        cm.update(torch.tensor([0]), torch.tensor([3]))
    with pytest.raises(ValueError, match=r"^truth has class ids outside 0\.\.2$"):
        cm.update(torch.tensor([1]), torch.tensor([-1]))
    with pytest.raises(ValueError, match=r"^prediction and truth differ in size: 2 vs 3$"):
        cm.update(torch.tensor([0, 1]), torch.tensor([0, 1, 2]))
    assert cm.matrix.sum() == 2  # refused updates change nothing


def test_empty_update_is_a_no_op():
    cm = Confusion(2)
    cm.update(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))
    assert cm.matrix.sum() == 0


def test_scores_asymmetric_matrix_hand_computed():
    # rows = truth, cols = prediction
    m = np.array([[5, 1, 0],
                  [2, 3, 1],
                  [0, 0, 4]])
    s = scores(m, T3)
    # a: TP 3, |gt| 6, |pred| 4 → F1 6/10, IoU 3/7;  b: TP 4, |gt| 4, |pred| 5 → F1 8/9, IoU 4/5
    # background: TP 5, |gt| 6, |pred| 7 → F1 10/13, IoU 5/8
    assert s["f1"] == pytest.approx({"background": 10 / 13, "a": 0.6, "b": 8 / 9})
    assert s["iou"] == pytest.approx({"background": 5 / 8, "a": 3 / 7, "b": 0.8})
    assert s["mean_f1"] == pytest.approx((0.6 + 8 / 9) / 2)
    assert s["miou"] == pytest.approx((3 / 7 + 0.8) / 2)
    assert s["pixel_acc"] == pytest.approx(12 / 16)
    assert "groups_f1" not in s  # no groups in this table
    assert set(s) == {"mean_f1", "miou", "pixel_acc", "f1", "iou"}
    assert all(isinstance(v, float) for v in (s["mean_f1"], s["miou"], s["pixel_acc"]))


def test_scores_all_foreground_absent_gives_nan_means_and_zero_matrix_nan_accuracy():
    m = np.zeros((3, 3))
    m[0, 0] = 7
    s = scores(m, T3)
    assert s["f1"]["background"] == 1.0 and s["iou"]["background"] == 1.0
    assert math.isnan(s["f1"]["a"]) and math.isnan(s["iou"]["b"])
    assert math.isnan(s["mean_f1"]) and math.isnan(s["miou"])
    assert s["pixel_acc"] == 1.0
    empty = scores(np.zeros((3, 3)), T3)
    assert math.isnan(empty["pixel_acc"]) and math.isnan(empty["mean_f1"])


def test_scores_perfect_and_all_wrong():
    s = scores(np.diag([3, 2, 1]), T3)
    assert s["mean_f1"] == 1.0 and s["miou"] == 1.0 and s["pixel_acc"] == 1.0
    wrong = np.array([[0, 2, 0], [0, 0, 3], [1, 0, 0]])
    w = scores(wrong, T3)
    assert w["f1"] == {"background": 0.0, "a": 0.0, "b": 0.0}
    assert w["mean_f1"] == 0.0 and w["pixel_acc"] == 0.0


def test_merged_groups_count_confusions_inside_the_group():
    m = np.array([[10, 1, 0, 2],
                  [0, 4, 3, 0],
                  [1, 2, 5, 0],
                  [0, 0, 1, 6]])
    s = scores(m, G4)
    # ab: inside block [[4,3],[2,5]] → TP 14; |gt| = rows a,b = 7 + 8 = 15; |pred| = cols a,b = 7 + 9 = 16
    assert s["groups_f1"]["ab"] == pytest.approx(28 / 31)
    # c alone: TP 6, |gt| 7, |pred| 8 → 12/15, equal to the per-class F1
    assert s["groups_f1"]["c_only"] == pytest.approx(12 / 15) == pytest.approx(s["f1"]["c"])
    assert list(s["groups_f1"]) == ["ab", "c_only"]


def test_scores_refuses_a_matrix_of_the_wrong_size():
    with pytest.raises(ValueError, match=r"^confusion matrix is \(2, 2\), the t3 table has 3 classes$"):
        scores(np.zeros((2, 2)), T3)


def test_scores_on_narrow_integer_matrices_do_not_overflow():
    # a uint8 matrix (e.g. a small saved confusion) must be scored in float: 2·TP = 400 does not fit in uint8
    m = np.array([[200, 0, 0], [0, 200, 0], [0, 0, 100]], dtype=np.uint8)
    s = scores(m, T3)
    assert s["f1"] == {"background": 1.0, "a": 1.0, "b": 1.0}
    assert s["iou"]["a"] == 1.0 and s["pixel_acc"] == 1.0


def test_absent_classes_give_nan_without_numpy_warnings():
    # 0/0 is decided explicitly (NaN, left out of the means), not by dividing and letting numpy warn
    import warnings

    m = np.zeros((3, 3), dtype=np.int64)
    m[0, 0] = 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = scores(m, T3)
        zero = scores(np.zeros((3, 3)), T3)
    assert math.isnan(s["f1"]["a"]) and math.isnan(s["mean_f1"]) and math.isnan(s["miou"])
    assert math.isnan(zero["pixel_acc"])


def test_constant_f1_is_the_mean_f1_of_answering_one_class_everywhere():
    """The parser's promotion floor (3× this): by hand on background 50, skin 30, nose 20 pixels of truth."""
    table = CELEBAMASK_HQ
    m = np.zeros((19, 19))
    for name, n in (("background", 50), ("skin", 30), ("nose", 20)):
        m[table.index(name), table.index(name)] = n
    # skin everywhere: skin F1 = 2·30 / (2·30 + 70 false skin) ; nose F1 = 0 ; absent classes do not count
    assert constant_f1(m, table) == pytest.approx((60 / 130 + 0.0) / 2)
    assert constant_f1(m, table, "nose") == pytest.approx((40 / 120 + 0.0) / 2)
    assert math.isnan(constant_f1(m, table, "no such class"))
    assert constant_f1(m, table) == constant_f1(m * 7, table)          # counts, not their scale
