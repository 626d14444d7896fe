"""Occluder kinds of the synthetic data (faceparse.data.synth): each kind forced and placed on the face, its
visible class, occlusion/kinds.json, the occlusion-rich balanced test split, determinism."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faceparse.data.synth import OCCLUDER_KINDS, OCCLUDER_VISIBLE, generate_sample, occlusion_plan, write_dataset
from faceparse.labels import CELEBAMASK_HQ

C = {n: i for i, n in enumerate(CELEBAMASK_HQ.classes)}
VISIBLE = {k: C[v] for k, v in OCCLUDER_VISIBLE.items()}
SPLITS = {"train": 0.5, "val": 0.25, "test": 0.25}


def _hidden(s, idx) -> float:
    """Fraction of the landmarks ``idx`` under the occluder."""
    lm = np.round(s.landmarks[list(idx)]).astype(int)
    return float(s.occlusion[lm[:, 1], lm[:, 0]].mean())


def test_kind_table():
    assert OCCLUDER_KINDS == ("hand", "bar", "object", "hair", "mask", "sunglasses")
    assert VISIBLE == {"hand": 0, "bar": 0, "object": 0, "hair": C["hair"], "mask": 0, "sunglasses": C["eye_g"]}
    with pytest.raises(ValueError, match="scarf"):
        generate_sample(0, 0, size=64, kind="scarf")


@pytest.mark.parametrize("size", [128, 256])
@pytest.mark.parametrize("kind", OCCLUDER_KINDS)
def test_forced_kind(kind, size):
    single = 0
    for i in range(4):
        s = generate_sample(4, i, size=size, occlusion_prob=0.0, kind=kind)
        bare = generate_sample(4, i, size=size, occlusion_prob=0.0)
        assert s.occluders[0] == kind and len(s.occluders) <= 2 and s.occlusion.any() and not bare.occluders
        np.testing.assert_array_equal(s.complete, bare.complete)       # the face does not see the occluder
        np.testing.assert_array_equal(s.landmarks, bare.landmarks)
        np.testing.assert_array_equal(s.label[~s.occlusion], s.complete[~s.occlusion])
        under = set(np.unique(s.label[s.occlusion]).tolist())
        assert under <= {VISIBLE[k] for k in s.occluders}
        if s.occluders == [kind]:
            single += 1
            assert under == {VISIBLE[kind]}
            if kind in ("hair", "mask", "sunglasses"):                 # worn on the face
                assert (s.complete[s.occlusion] == C["skin"]).mean() >= 0.1
            if kind == "mask":        # nose base, mouth and chin covered
                assert _hidden(s, range(31, 36)) == 1 and _hidden(s, range(48, 68)) == 1 and _hidden(s, [8]) == 1
            if kind == "sunglasses":
                assert _hidden(s, range(36, 48)) >= 0.75
            if kind == "hair":
                assert _hidden(s, range(36, 68)) < 0.5                  # a lock, not a curtain
    assert single >= 1


def test_occlusion_plan():
    split_of = ["train", "test", "val", "test", "test"] * 20
    assert occlusion_plan(100, 0, split_of, 0.3, None) == [(0.3, None)] * 100   # as before the key existed
    plan = occlusion_plan(100, 0, split_of, 0.3, 1.0)
    forced = [k for (p, k), sp in zip(plan, split_of) if sp == "test"]
    assert forced == [OCCLUDER_KINDS[j % 6] for j in range(60)]
    assert all(p == (0.3, None) for p, sp in zip(plan, split_of) if sp != "test")
    with pytest.raises(ValueError, match="test_occlusion_prob"):
        occlusion_plan(3, 0, ["test"] * 3, 0.3, 1.5)


@pytest.fixture(scope="module")
def rich(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("occ") / "ds", n=48, size=128, seed=1, occlusion_prob=0.3,
                         splits=SPLITS, test_occlusion_prob=1.0, progress=False)


def test_kinds_json_matches_the_masks(rich):
    kinds = json.loads((rich / "occlusion" / "kinds.json").read_text())
    df = pd.read_parquet(rich / "manifest.parquet")
    assert list(kinds) == df["id"].tolist()
    for row in df.itertuples():
        occ = np.asarray(Image.open(rich / f"occlusion/{row.id}.png")) > 0
        lab = np.asarray(Image.open(rich / row.label))
        comp = np.asarray(Image.open(rich / f"complete/{row.id}.png"))
        ks = kinds[row.id]
        assert set(ks) <= set(OCCLUDER_KINDS) and len(ks) <= 2
        assert bool(ks) == bool(occ.any())
        np.testing.assert_array_equal(lab[~occ], comp[~occ])
        assert set(np.unique(lab[occ]).tolist()) <= {VISIBLE[k] for k in ks}
    info = json.loads((rich / "dataset.json").read_text())
    assert info["occluder_kinds"] == list(OCCLUDER_KINDS) and info["occluder_classes"] == OCCLUDER_VISIBLE
    assert info["test_occlusion_prob"] == 1.0 and info["occlusion_prob"] == 0.3


def test_test_split_is_occluded_and_balanced(rich):
    kinds = json.loads((rich / "occlusion" / "kinds.json").read_text())
    df = pd.read_parquet(rich / "manifest.parquet")
    test = df.loc[df["split"] == "test", "id"].tolist()
    assert len(test) == 12
    firsts = [kinds[i][0] for i in test]                  # every test face occluded, kinds in turn
    assert firsts == [OCCLUDER_KINDS[j % 6] for j in range(12)]
    others = [kinds[i] for i in df.loc[df["split"] != "test", "id"]]
    assert 0 < sum(map(bool, others)) < len(others)       # train / val keep occlusion_prob


def test_same_arguments_same_bytes(tmp_path):
    a = generate_sample(9, 2, size=128, occlusion_prob=0.0, kind="hair")
    b = generate_sample(9, 2, size=128, occlusion_prob=0.0, kind="hair")
    for f in ("image", "label", "complete", "occlusion", "landmarks"):
        assert getattr(a, f).tobytes() == getattr(b, f).tobytes()
    assert a.occluders == b.occluders
    kw = dict(n=8, size=64, seed=2, splits=SPLITS, test_occlusion_prob=0.75, progress=False)
    d1, d2 = write_dataset(tmp_path / "a", **kw), write_dataset(tmp_path / "b", **kw)
    files = sorted(p.relative_to(d1) for p in d1.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(d2) for p in d2.rglob("*") if p.is_file())
    assert "occlusion/kinds.json" in map(str, files)
    for f in files:
        assert (d1 / f).read_bytes() == (d2 / f).read_bytes(), f
