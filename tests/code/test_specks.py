"""Speck removal (faceparse.specks): few-pixel islands of a class take their surroundings' label; regions at
or above the threshold, and maps too small for it, are left alone."""
from __future__ import annotations

import numpy as np

from faceparse.specks import MIN_REGION, drop_specks


def _face_map() -> np.ndarray:
    lab = np.zeros((100, 100), np.uint8)
    lab[20:80, 20:80] = 1                    # skin
    lab[60:66, 40:60] = 12                   # u_lip: 120 px
    return lab


def test_specks_take_the_label_around_them():
    lab = _face_map()
    noisy = lab.copy()
    noisy[63, 50] = 11                       # a 1-px 'mouth' fleck inside the lip
    noisy[30:32, 30:32] = 14                 # a 4-px 'hat' fleck on the skin
    noisy[5, 5] = 1                          # a 1-px 'skin' fleck in the background
    out = drop_specks(noisy, min_frac=5e-4)  # 5 px on 100²
    assert np.array_equal(out, lab)
    assert noisy[63, 50] == 11               # the input is not modified


def test_regions_at_the_threshold_and_real_parts_stay():
    lab = _face_map()
    lab[30:32, 30:33] = 14                   # 6 px: at a 5-px threshold, kept
    assert np.array_equal(drop_specks(lab, min_frac=5e-4), lab)
    assert np.array_equal(drop_specks(lab, min_frac=0), lab)


def test_a_speck_on_two_neighbours_takes_the_commoner():
    lab = np.zeros((50, 50), np.uint8)
    lab[:, 25:] = 1
    lab[10:12, 24:26] = 13                   # touches 0 on its left, 1 on its right: 4 neighbours each...
    lab[9, 23:27] = 1                        # ...and one more row of 1 above tips the balance
    out = drop_specks(lab, min_frac=3e-3)    # 7.5 px
    assert (out[10:12, 24:26] == 1).all()


def test_the_default_threshold_is_52_pixels_at_512():
    assert round(MIN_REGION * 512 * 512) == 52
