"""The serving codecs' canary agreement, hand-computed: label maps by mean IoU, landmark answers by
1 − the mean point distance between the two versions over the inter-ocular distance (as NME)."""
import json

import numpy as np
import pytest

from faceparse.serve.codecs import codec_for
from faceparse.serve.imaging import label_png


def points_answer(pts) -> bytes:
    return json.dumps({"points": np.asarray(pts).tolist()}).encode()


def test_landmark_agreement_is_one_minus_the_nme_between_versions():
    a = np.zeros((68, 2))
    a[36], a[45] = [10.0, 50.0], [90.0, 50.0]          # inter-ocular distance 80
    b = a.copy()
    b[:, 0] += 4.0                                      # every point 4 px off: NME 4 / 80 = 0.05
    lm = codec_for("landmarks")
    assert lm.agreement(points_answer(a), points_answer(b)) == pytest.approx(0.95)
    assert lm.agreement(points_answer(a), points_answer(a)) == 1.0
    far = a.copy()
    far[:, 1] += 200.0                                  # NME 2.5: no agreement, not negative
    assert lm.agreement(points_answer(a), points_answer(far)) == 0.0
    assert lm.agreement(b"not json", points_answer(a)) is None
    assert (lm.formats[0], lm.mirror_format) == ("json", "json")


def test_parser_agreement_is_mean_iou_of_the_label_maps():
    x = np.array([[0, 1], [1, 1]], np.uint8)
    y = np.array([[0, 1], [0, 1]], np.uint8)
    # class 0: inter 1, union 2 → 0.5; class 1: inter 2, union 3 → 2/3
    assert codec_for("parser").agreement(label_png(x), label_png(y)) == pytest.approx((0.5 + 2 / 3) / 2)
    assert codec_for(None).mirror_format == "png"
    with pytest.raises(ValueError, match="no serving codec for model stage 'reconstruct3d'"):
        codec_for("reconstruct3d")


def test_fisn_agreement_is_one_minus_the_mean_absolute_difference_of_the_raw_outputs():
    from faceparse.serve.imaging import encode_png

    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[:2] = 51                                          # half the pixels 51 apart: mean |a − b| = 25.5 = 0.1 × 255
    fisn = codec_for("fisn")
    assert fisn.agreement(encode_png(a), encode_png(b)) == pytest.approx(0.9)
    assert fisn.agreement(encode_png(a), encode_png(a)) == 1.0
    assert fisn.agreement(encode_png(a), encode_png(np.zeros((2, 2, 3), np.uint8))) is None   # sizes differ
    assert fisn.agreement(b"garbage", encode_png(a)) is None
    assert (fisn.formats[0], fisn.mirror_format) == ("png", "raw")
