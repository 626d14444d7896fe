"""The mask-aware de-occluder (issue #31): the gated preset's occlusion head and inpainter, their losses, the
mask IoU the benchmark reports, and the real photos with occluders pasted at known masks."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from faceparse.photo_eval import labelled_photos
from faceparse.stages import get_stage
from faceparse.stages.fisn.evaluate import MaskIoU
from faceparse.stages.fisn.model import GanStep, RegionPSNR, dilate
from faceparse.occluders import KINDS, mask_iou, occlude, pasted_cases, read_face
from faceparse.stages.fisn.unet import Inpainter

WEIGHTS = {"w_gan": 0.0, "w_fm": 0.0, "w_per": 0.0, "w_l1": 0.1, "w_hole": 1.0, "w_occlusion": 1.0}


def _gated(size: int = 32):
    st = get_stage("fisn")
    cfg = st.model_config({"model": {"preset": "gated", "overrides": {"generator": {"widths": [8, 16, 16, 16]}}}})
    return st.build_model({"model_config": cfg, "num_classes": 19, "input_size": size})


def _bars(n: int, size: int = 32, seed: int = 0):
    """Smooth random faces-to-be (low-frequency noise) with a saturated horizontal bar at a random height."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=g) * 1.6 - 0.8, size=size,
                                            mode="bilinear", align_corners=False)
    occ = torch.zeros(n, size, size, dtype=torch.bool)
    for i, y in enumerate(torch.randint(4, size - 8, (n,), generator=g).tolist()):
        occ[i, y:y + 4, 2:size - 2] = True
    image = torch.where(occ.unsqueeze(1), torch.tensor([0.9, -0.9, 0.9]).view(1, 3, 1, 1), clean)
    return image, clean, occ


def test_the_inpainter_keeps_every_pixel_outside_its_mask():
    net = Inpainter(widths=(8, 16, 16, 16))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    mask = torch.zeros(2, 32, 32, dtype=torch.bool)
    mask[:, 10:20, 5:25] = True
    y = net(x, mask)
    assert torch.equal(y[:, :, ~mask[0]], x[:, :, ~mask[0]])
    assert not torch.equal(y[:, :, mask[0]], x[:, :, mask[0]])


def test_the_gated_preset_learns_to_find_and_fill_a_bar_without_a_discriminator():
    torch.manual_seed(0)
    model = _gated()
    step = GanStep(model.generator, model.discriminator, False, model.occlusion)
    opt = torch.optim.Adam([*model.generator.parameters(), *model.occlusion.parameters()], lr=3e-3)
    image, clean, occ = _bars(16)
    disc = {k: v.clone() for k, v in model.discriminator.state_dict().items()}
    seg = torch.zeros(16, 32, 32, dtype=torch.long)
    first = None
    for _ in range(60):
        loss, parts = step("G", image, seg, seg, clean, weights=WEIGHTS, occluder=occ)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else {k: float(v) for k, v in parts.items()}
    assert set(parts) == {"l1", "hole", "occlusion"}           # no adversarial term at weight 0
    assert all(torch.equal(v, model.discriminator.state_dict()[k]) for k, v in disc.items())
    assert float(parts["occlusion"]) < 0.5 * first["occlusion"] and float(parts["hole"]) < 0.7 * first["hole"]
    test_image, test_clean, test_occ = _bars(8, seed=1)
    with torch.no_grad():
        found = model.occlusion_mask(test_image)
        out = model(test_image, seg[:8], seg[:8])
    assert mask_iou(found.numpy(), test_occ.numpy()) > 0.6
    hole = test_occ.unsqueeze(1).expand_as(out)
    assert (out - test_clean)[hole].abs().mean() < 0.5 * (test_image - test_clean)[hole].abs().mean()


def test_a_head_only_pass_trains_the_head_and_leaves_the_inpainter_alone():
    """fisn.loss with every image term 0 (configs/fisn-head.yaml): the head learns, the generator is never run,
    and validation scores the head's mask against the truth (``occlusion_iou``)."""
    torch.manual_seed(0)
    model = _gated()
    step = GanStep(model.generator, model.discriminator, False, model.occlusion)
    opt = torch.optim.Adam([*model.generator.parameters(), *model.occlusion.parameters()], lr=3e-3)
    gen = {k: v.clone() for k, v in model.generator.state_dict().items()}
    image, clean, occ = _bars(16)
    seg = torch.zeros(16, 32, 32, dtype=torch.long)
    head_only = {**WEIGHTS, "w_l1": 0.0, "w_hole": 0.0}
    calls = []
    model.generator.register_forward_hook(lambda *a: calls.append(1))
    losses = []
    for _ in range(40):
        loss, parts = step("G", image, seg, seg, clean, weights=head_only, occluder=occ)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(parts["occlusion"]))
    assert set(parts) == {"occlusion"} and not calls
    assert all(torch.equal(v, model.generator.state_dict()[k]) for k, v in gen.items())
    assert losses[-1] < 0.5 * losses[0]
    ev = RegionPSNR()
    region = occ.clone()
    ev.update(model.eval(), {"image": image, "source": seg, "target": seg, "real": clean, "region": region,
                             "occluder": occ}, torch.device("cpu"), contextlib.nullcontext())
    ev.total = ev.sums
    with torch.no_grad():
        expect = mask_iou(model.occlusion_mask(image).numpy(), occ.numpy())
    assert ev.compute()["occlusion_iou"] == pytest.approx(expect, abs=1e-6) and expect > 0.3


def test_dilate_grows_a_mask_by_k_pixels():
    m = torch.zeros(1, 9, 9, dtype=torch.bool)
    m[0, 4, 4] = True
    assert int(dilate(m, 0).sum()) == 1 and int(dilate(m, 1).sum()) == 9 and int(dilate(m, 2).sum()) == 25


def test_mask_iou_by_hand():
    occ = np.zeros((4, 4), bool)
    occ[0, :] = True                      # an occluder across the top row…
    region = occ & np.array([[0, 1, 1, 0]] * 4, bool)   # …over the face in its middle two pixels
    mask = np.zeros((4, 4), bool)
    mask[0, 1:] = True                    # found: three of its pixels
    mask[3, 3] = True                     # and one false alarm
    ious = MaskIoU()
    ious.add(mask, occ, region)
    out = ious.compute()
    assert out["occlusion_iou"] == pytest.approx(3 / 5)
    assert out["occlusion_iou_face"] == pytest.approx(2 / 3)   # (0,1), (0,2) of {(0,1), (0,2), (3,3)}


def test_pasted_occluders_are_fixed_and_scored_inside_the_face(real_samples):
    pairs = labelled_photos(real_samples)
    a, b = pasted_cases(pairs[:2]), pasted_cases(pairs[:2])
    assert [c.kind for c in a] == list(KINDS) * 2
    for x, y in zip(a, b):
        assert np.array_equal(x.photo, y.photo) and np.array_equal(x.occluder, y.occluder)
        assert x.region.any() and not (x.region & ~x.occluder).any()
        assert not np.array_equal(x.photo[x.occluder], x.clean[x.occluder])
        assert np.array_equal(x.photo[~x.occluder], x.clean[~x.occluder])


def test_pasting_names_a_label_map_without_eyes_and_an_unknown_kind(real_samples, tmp_path):
    from PIL import Image

    photo, label = labelled_photos(real_samples)[0]
    lab = np.asarray(Image.open(label)).copy()
    lab[np.isin(lab, (4, 5))] = 1
    bad = tmp_path / "noeyes.png"
    Image.fromarray(lab).save(bad)
    with pytest.raises(ValueError, match="noeyes.png"):
        read_face(photo, bad)
    face = read_face(photo, label)
    with pytest.raises(ValueError, match="occluder kind"):
        occlude(face, face, "scarf")
