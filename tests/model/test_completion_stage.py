"""The map-completion stage on the one path: composed from two bundles (with the registry versions
`register` recorded), evaluated on occluded synthetic faces (the benchmark's keys and an independent check of
its region scores), and `faceparse complete` on photos and on a dataset through the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from faceparse.cli import app
from faceparse.config import load_params
from faceparse.stages import for_stage, get_stage



@pytest.fixture(scope="module")
def setup(tmp_path_factory, repo_root):
    from faceparse.data.synth import write_dataset
    from faceparse.serve.testing import landmark_bundle, tiny_bundle

    root = tmp_path_factory.mktemp("completion")
    write_dataset(root / "data", 24, size=64, occlusion_prob=0.3, test_occlusion_prob=1.0,
                  splits={"train": 0.5, "val": 0.25, "test": 0.25}, progress=False)
    tiny_bundle(root / "parser", input_size=64, stage="parser")
    landmark_bundle(root / "landmarks", input_size=64)
    sets = [f"data.dir={root / 'data'}", f"validate.out_dir={root / 'validation'}", "registry.tracking_uri=null",
            f"completion.compose.parser={root / 'parser'}", f"completion.compose.landmarks={root / 'landmarks'}",
            f"completion.train.bundle_dir={root / 'completion'}",
            f"completion.evaluate.metrics_file={root / 'm/eval.json'}",
            f"completion.evaluate.plots_dir={root / 'm/plots'}", f"completion.evaluate.table_file={root / 'm/table.md'}",
            f"landmarks.registry.registered_file={root / 'lm_registered.json'}"]
    return root, sets


def test_compose_records_the_models_and_their_registered_versions(setup, repo_root):
    from faceparse.bundle import WEIGHTS, load_bundle
    from faceparse.hashing import sha256_file

    root, sets = setup
    sha = sha256_file(root / "landmarks" / WEIGHTS)   # as `register` writes it for these weights
    (root / "lm_registered.json").write_text(json.dumps({"uri": "models:/faceparse-landmarks/7", "bundle_sha256": sha}))
    r = CliRunner().invoke(app, ["compose", "--params", str(repo_root / "params.yaml"),
                                 *[x for s in sets for x in ("--set", s)]])
    assert r.exit_code == 0, r.output
    composes = json.loads(r.stdout)["composes"]
    assert composes["landmarks"]["model_uri"] == "models:/faceparse-landmarks/7"
    assert composes["parser"]["model_uri"] is None and composes["parser"]["ref"] == str(root / "parser")
    model, meta = load_bundle(root / "completion")
    assert meta["stage"] == "completion" and meta["model_config"]["reading"] == "sequential"
    parser, _ = load_bundle(root / "parser")
    for k, v in parser.state_dict().items():   # the composed weights are the parser's own
        assert np.array_equal(model.parser.state_dict()[k].numpy(), v.numpy()), k


def test_compose_refuses_a_model_of_the_wrong_stage(setup, repo_root):
    root, sets = setup
    r = CliRunner().invoke(app, ["compose", "--params", str(repo_root / "params.yaml"),
                                 *[x for s in sets for x in ("--set", s)], "--parser", str(root / "landmarks")])
    assert r.exit_code == 2 and "is a 'landmarks' model, not a 'parser' one" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["compose", "--params", str(repo_root / "params.yaml"), "--stage", "parser"])
    assert r.exit_code == 2 and "is trained, not composed" in " ".join(r.output.split())


def test_evaluate_reports_the_benchmark_and_its_scores_check_out(setup, repo_root):
    from faceparse.bundle import load_bundle
    from faceparse.stages.completion.algorithm import Settings, plus
    from faceparse.data.manifest import load_split
    from faceparse.evaluate import evaluate
    from faceparse.landmark_map import draw_map

    root, sets = setup
    params = load_params(repo_root / "params.yaml", sets)
    get_stage("completion").compose(params)
    res = evaluate(for_stage(params, "completion"), progress=False)
    for key in ("f1_occluded_alpha", "f1_occluded_gamma", "f1_face_alpha", "f1_face_gamma", "occlusion_iou",
                "f1_occluded_gamma_gt", "f1_occluded_beta", "per_kind"):
        assert key in res, key
    assert json.loads((root / "m/eval.json").read_text())["f1_occluded_gamma"] == res["f1_occluded_gamma"]
    assert (root / "m/plots/examples.png").is_file() and "Algorithm 1" in (root / "m/table.md").read_text()
    assert res["n_occluded_images"] == res["n_images"] == 6 and set(res["per_kind"]) >= {"hand", "bar", "object"}
    # independent: Algorithm 1 with the true landmarks, F1 over the occluded face pixels, counted here
    settings, face = Settings(), Settings().face_ids()
    model, meta = load_bundle(root / "completion")
    tp = np.zeros(19)
    gt_n = np.zeros(19)
    pr_n = np.zeros(19)
    from faceparse.images import read_image
    from faceparse.models import preprocess

    for _, row in load_split(root / "data", "test").iterrows():
        sid = row["id"]
        complete = np.asarray(Image.open(root / "data/complete" / f"{sid}.png"))
        region = (np.asarray(Image.open(root / "data/occlusion" / f"{sid}.png")) > 0) & np.isin(complete, face)
        alpha = model.parser(preprocess(read_image(root / "data" / row["image"]), 64)[None], 64).argmax(1)[0].numpy()
        pred = plus(alpha.astype(np.uint8), draw_map(np.load(root / "data" / row["landmarks"]), 64), settings)
        t, p = complete[region], pred[region]
        for c in face:
            tp[c] += ((t == c) & (p == c)).sum()
            gt_n[c] += (t == c).sum()
            pr_n[c] += (p == c).sum()
    present = [c for c in face if gt_n[c] + pr_n[c] > 0]
    want = np.mean([2 * tp[c] / (gt_n[c] + pr_n[c]) for c in present])
    assert res["f1_occluded_gamma_gt"] == pytest.approx(want, abs=1e-6)
    assert res["f1_occluded_gamma_gt"] > res["f1_occluded_alpha"]   # true landmarks fill what the parser misses


def test_complete_cli_on_photos_and_on_the_dataset(setup, repo_root, real_samples, tmp_path):
    root, sets = setup
    params = load_params(repo_root / "params.yaml", sets)
    get_stage("completion").compose(params)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    base = ["--params", str(repo_root / "params.yaml"), *[x for s in sets for x in ("--set", s)]]
    r = CliRunner().invoke(app, ["complete", str(real_samples / "0.jpg"), str(tmp_path / "broken.jpg"),
                                 "--model", str(root / "completion"), "--out", str(tmp_path / "out"), "-q",
                                 "-r", "96", *base])
    assert r.exit_code == 1, r.output                 # the broken photo is named, the other still written
    assert "broken.jpg" in " ".join(r.output.split())
    for k in ("alpha", "beta", "gamma", "occlusion", "sheet"):
        assert (tmp_path / "out" / f"0_{k}.png").is_file(), k
    assert Image.open(tmp_path / "out/0_gamma.png").size == (96, 96)
    r = CliRunner().invoke(app, ["complete", "--dataset", str(root / "data"), "--out", str(tmp_path / "completed"),
                                 "--parser", str(root / "parser"), "--landmarks", str(root / "landmarks"), "-q", *base])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "completed/completed").glob("*.png"))) == 24
    assert json.loads((tmp_path / "completed/manifest.json").read_text())["count"] == 24
    (tmp_path / "other").mkdir()
    (tmp_path / "other/keep.txt").write_text("mine")
    r = CliRunner().invoke(app, ["complete", "--dataset", str(root / "data"), "--out", str(tmp_path / "other"),
                                 "--model", str(root / "completion"), "-q", *base])
    assert r.exit_code == 2 and (tmp_path / "other/keep.txt").read_text() == "mine"


def test_stages_lists_the_composed_stage():
    r = CliRunner().invoke(app, ["stages", "--json"])
    by = {row["name"]: row for row in json.loads(r.stdout)}
    assert by["completion"]["trainable"] is False and by["completion"]["primary_metric"] == "f1_occluded_gamma"
    assert by["completion"]["direction"] == "max" and by["completion"]["model_name"] == "faceparse-completion"
