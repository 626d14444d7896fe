"""Clean images of the synthetic data (faceparse.data.synth ``SynthSample.clean``, ``clean/<id>.jpg``): the
occluded face rendered without its occluders from the same random stream."""
from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
from PIL import Image

from faceparse.data import synth_render
from faceparse.data.synth import OCCLUDER_KINDS, generate_sample, write_dataset

# sha256 of `image` recorded with the renderer as it was before clean images existed (same numbers after):
# the clean branch must not disturb any draw. A deliberate data change (or an OpenCV build rounding floats
# differently) shows here first: check, then re-pin. Re-pinned for issue #16's deliberate change (eye
# sockets, skin shine, beards, curls; fewer hats and glasses).
PINNED = {(3, 0, 64, None): "3063125a17788828e3bdd4e31789054ed0dabfabcfa3b3ca0a950d93717c96f9",
          (3, 1, 64, None): "a91e6d4a0b5b1d2e69d9262e9130f1ef29883ccd8991fb97600a1ec19641493b",
          (3, 2, 96, "mask"): "af7ca179e31c69124303d1e561fc89a72c2eaf3eb09609facf7abeba91bfdf77"}


def _near_mask_blocks(occ: np.ndarray, block: int = 16, spill: int = 2) -> np.ndarray:
    """Pixels a JPEG round trip may change when only ``occ`` differs: the 16×16 MCUs (4:2:0 chroma) touching
    it, plus the decoder's chroma upsampling reaching ``spill`` pixels into the next MCU."""
    h, w = occ.shape
    touched = occ.reshape(h // block, block, w // block, block).any((1, 3))
    near = np.kron(touched, np.ones((block, block), np.uint8))
    return cv2.dilate(near, np.ones((2 * spill + 1,) * 2, np.uint8)).astype(bool)


@pytest.mark.parametrize("kind", OCCLUDER_KINDS)
def test_identical_outside_mask_before_jpeg_and_differs_inside(kind, monkeypatch):
    monkeypatch.setattr(synth_render, "_jpeg", lambda img, quality: img)
    for i in range(2):
        s = generate_sample(2, i, size=64, occlusion_prob=0.0, kind=kind)
        occ = s.occlusion
        assert s.clean.shape == s.image.shape and s.clean.dtype == np.uint8
        np.testing.assert_array_equal(s.clean[~occ], s.image[~occ])
        inside = np.abs(s.clean.astype(int) - s.image.astype(int))[occ].mean()
        assert inside > 5, f"{kind}: clean barely differs under the occluder ({inside:.1f})"


def test_after_jpeg_differences_stay_in_blocks_touching_the_mask():
    for k, kind in enumerate(OCCLUDER_KINDS):
        s = generate_sample(5, k, size=64, occlusion_prob=0.0, kind=kind)
        changed = (s.clean != s.image).any(2)
        assert not (changed & ~_near_mask_blocks(s.occlusion)).any(), kind


def test_unoccluded_unchanged_and_without_clean_file(tmp_path):
    for (seed, index, size, kind), digest in PINNED.items():
        s = generate_sample(seed, index, size=size, occlusion_prob=0.0, kind=kind)
        assert hashlib.sha256(s.image.tobytes()).hexdigest() == digest, (seed, index, kind)
        assert (s.clean is s.image) == (not s.occluded)
    root = write_dataset(tmp_path / "d", 8, size=64, seed=5, occlusion_prob=0.5, progress=False)
    for i in range(8):
        s = generate_sample(5, i, size=64, occlusion_prob=0.5)
        path = root / f"clean/synth_5_{i:06d}.jpg"
        assert path.is_file() == s.occluded
        if s.occluded:   # q95 like images/: close to the array (camera noise costs a noisy face ~6 levels)
            disk = np.asarray(Image.open(path).convert("RGB")).astype(int)
            err = np.abs(disk - s.clean.astype(int)).mean()
            assert err < 8 and err < np.abs(disk - s.image.astype(int)).mean(), i


def test_deterministic():
    a, b = (generate_sample(7, 1, size=64, occlusion_prob=0.0, kind="hand") for _ in range(2))
    np.testing.assert_array_equal(a.clean, b.clean)
    c = generate_sample(7, 2, size=64, occlusion_prob=0.0, kind="hand")
    assert not np.array_equal(a.clean, c.clean)
