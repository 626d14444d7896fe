"""The map completion that ships in faceparse/pretrained/completion/ (issue #32): it is the parser and the
landmark model shipped beside it, composed; `faceparse complete` and the chain run it with no model named; and
on fixed data — the four real fixture photos with occluders pasted at known masks — it holds floors just under
its card's figures, so a broken weight file or a regression of either part fails here (its card:
faceparse/pretrained/completion/README.md)."""
from __future__ import annotations

import json

import pytest

from faceparse.api import pretrained_dir
from faceparse.bundle import META, load_bundle
from faceparse.hashing import sha256_file
from faceparse.occluders import pasted_cases
from faceparse.photo_eval import labelled_photos
from faceparse.stages.completion.pasted import score_pasted

GAMMA_F1 = 0.26     # F1 inside the pasted occluders' face region, M_γ (card 0.297)
ALPHA_GAIN = 2.0    # M_γ over the parser's own map there (card 0.297 vs 0.099)
MASK_IOU = 0.22     # the occlusion mask against that region (card 0.265)


def test_the_bundle_ships_with_its_card_and_composes_the_shipped_models():
    folder = pretrained_dir("completion")
    meta = json.loads((folder / META).read_text())
    assert meta["stage"] == "completion" and (folder / "README.md").is_file()
    for part, shipped in (("parser", pretrained_dir("parser")), ("landmarks", pretrained_dir("landmarks"))):
        assert meta["composes"][part]["bundle_sha256"] == sha256_file(shipped / "weights.pt"), part


def test_on_real_photos_with_pasted_occluders_it_stays_near_its_card(real_samples):
    net, meta = load_bundle(pretrained_dir("completion"))
    res = score_pasted(net, meta, pasted_cases(labelled_photos(real_samples)), progress=False)
    assert res["n_cases"] == 16
    assert res["f1_occluded_gamma"] >= GAMMA_F1, res
    assert res["f1_occluded_gamma"] >= ALPHA_GAIN * res["f1_occluded_alpha"], res
    assert res["occlusion_iou"] >= MASK_IOU, res


@pytest.mark.parametrize("kind", ["eye_bar", "mouth_bar"])
def test_a_bar_over_a_feature_is_completed_not_kept(real_samples, kind):
    """The case completion exists for: the parser sees the bar as no face at all, M_γ draws the features back."""
    net, meta = load_bundle(pretrained_dir("completion"))
    cases = [c for c in pasted_cases(labelled_photos(real_samples)) if c.kind == kind]
    res = score_pasted(net, meta, cases, progress=False)
    assert res["f1_occluded_gamma"] > res["f1_occluded_alpha"] + 0.2, res
