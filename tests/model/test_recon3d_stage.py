"""The 3D reconstruction stage on the one path: the zero-initialised head renders the mean face; one training
step through the stage contract changes the network; `evaluate` writes the benchmark (de-occluded inputs null
without a FISN bundle, and why); the codec answers JSON / OBJ / overlay; `faceparse reconstruct` writes every
file and names a broken photo (exit 1); eq. 15 runs with a user-supplied TorchScript network.
Tiny everything: 8 synthetic 3D faces at 48², a width-8 ResNet."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from faceparse.cli import app
from faceparse.config import load_params
from faceparse.stages import for_stage, get_stage

REPO = Path(__file__).resolve().parents[2]
SIZE = 48


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """An 8-face 3D set (test split all occluded) and a bundle of an untrained width-8 network."""
    from faceparse.bundle import save_bundle
    from faceparse.data.synth3d import write_dataset3d

    root = tmp_path_factory.mktemp("recon3d")
    write_dataset3d(root / "data", 8, size=SIZE, splits={"train": 0.5, "val": 0.25, "test": 0.25}, progress=False)
    st = get_stage("recon3d")
    p = params_for(root, root / "out")
    meta = {"stage": "recon3d", "model_config": st.model_config(p), "input_size": SIZE,
            **st.data_meta({}, p)}
    torch.manual_seed(0)
    save_bundle(root / "bundle", st.build_model(meta), meta)
    return root


def sets(root: Path, out: Path, *extra: str) -> list[str]:
    return [f"recon3d.data.dir={root / 'data'}", f"validate.out_dir={root / 'validation'}",
            f"registry.tracking_uri=sqlite:///{root / 'mlflow.db'}", "recon3d.model.overrides.width=8",
            "recon3d.train.epochs=1", "recon3d.train.batch_size=4", f"recon3d.train.input_size={SIZE}",
            "recon3d.train.report=false", f"recon3d.train.run_dir={out / 'run'}",
            f"recon3d.train.bundle_dir={out / 'model'}", "recon3d.evaluate.deocclude=null",
            f"recon3d.evaluate.metrics_file={out / 'm/eval.json'}", f"recon3d.evaluate.plots_dir={out / 'm/plots'}",
            f"recon3d.evaluate.table_file={out / 'm/table.md'}", *extra]


def params_for(root: Path, out: Path, *extra: str) -> dict:
    return for_stage(load_params(REPO / "params.yaml", sets(root, out, *extra)), "recon3d")


def test_the_zero_initialised_head_renders_the_mean_face(setup):
    from faceparse.bundle import load_bundle
    from faceparse.face3d.render import Renderer

    model, meta = load_bundle(setup / "bundle")
    y = model(torch.rand(2, 3, SIZE, SIZE) * 2 - 1)
    assert torch.equal(y, torch.zeros_like(y))
    assert model.face.num_coeffs == 100 + 53 + 48 + 27 + 6 == y.shape[1]
    mean = Renderer(model.face, SIZE)(torch.zeros(1, y.shape[1]))
    out = model.render(y)
    assert torch.equal(out.image[0], mean.image[0]) and torch.equal(out.vertices[0], model.face.mean)
    assert out.mask.mean() > 0.3


def test_one_training_step_changes_the_network(setup):
    from faceparse.data.manifest import load_split
    from faceparse.training.distributed import setup as dd_setup
    from faceparse.training.loop import TrainContext
    from faceparse.stages.recon3d.dataset import Recon3dDataset

    st = get_stage("recon3d")
    p = params_for(setup, setup / "step")
    meta = {"model_config": st.model_config(p), "input_size": SIZE, **st.data_meta({}, p)}
    model = st.build_model(meta)
    opts = st.optimizers(model, type("Cfg", (), {"lr": 1e-3})())
    ctx = TrainContext(p, None, dd_setup("cpu"), meta, model, st.step_module(model), opts, {})
    st.prepare(ctx)
    assert ctx.state["face_loss"] is None and "off" in meta["face_feature_loss"]
    ds = Recon3dDataset(load_split(setup / "data", "train"), SIZE)
    batch = {k: torch.stack([ds[i][k] for i in range(2)]) for k in ("image", "points", "parse", "coeffs")}
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.train()
    loss = st.train_step(ctx, batch)
    assert torch.isfinite(loss) and loss.requires_grad
    assert set(ctx.state["tally"]) == {"lmk", "pix", "reg", "steps"}          # w_shape 0: no vertex loss
    ctx.state["weights"] = {**ctx.state["weights"], "w_shape": 10.0}
    st.train_step(ctx, batch)
    assert ctx.state["tally"]["shape"] > 0
    changed = [k for k, v in model.state_dict().items() if not torch.equal(before[k], v)]
    assert "backbone.fc.weight" in changed and any(k.startswith("backbone.stem") for k in changed)


def test_the_vertex_loss_is_off_by_default_and_pulls_towards_the_true_mesh(setup):
    """recon3d.loss.w_shape (configs/recon3d.yaml): zero for the true coefficients, a gradient on the identity
    outputs otherwise, and in the step's loss parts only when its weight is above 0."""
    from faceparse.face3d.loss import DEFAULTS, shape_loss
    from faceparse.face3d.model import FaceModel

    assert DEFAULTS["w_shape"] == 0 and "w_shape" not in load_params(REPO / "params.yaml", [])["recon3d"]["loss"]
    face = FaceModel()
    true = torch.zeros(2, face.num_coeffs)
    true[:, :5] = torch.tensor([1.0, -0.5, 0.3, 0.8, -1.2])
    assert float(shape_loss(face, face.split(true.clone()), true)) == pytest.approx(0.0, abs=1e-10)
    pred = torch.zeros_like(true, requires_grad=True)
    loss = shape_loss(face, face.split(pred), true)
    loss.backward()
    assert float(loss) > 0.01 and pred.grad[:, :5].abs().min() > 0     # cm², every moved mode pulled back
    # towards the truth: a small step along -grad lowers it
    assert float(shape_loss(face, face.split(pred.detach() - 0.5 * pred.grad / pred.grad.norm()), true)) < float(loss)


def test_evaluate_writes_the_benchmark(setup):
    from faceparse.evaluate import evaluate

    out = setup / "eval"
    res = evaluate(params_for(setup, out), bundle_dir=setup / "bundle", progress=False)
    m = json.loads((out / "m/eval.json").read_text())
    assert m["stage"] == "recon3d" and m["n_clean"] == 2 and m["n_occluded"] == 2
    # the untrained network answers the mean face: its errors are the baseline's, exactly
    assert m["p90_mm_clean"] == pytest.approx(m["p90_mm_mean_face"]) and m["p90_mm_clean"] > 0.5
    assert m["p90_mm_occluded"] == pytest.approx(m["p90_mm_clean"]) and m["lmk_nme"] > 0
    assert m["p90_mm_deoccluded"] is None and m["mean_mm_deoccluded"] is None
    assert "null" in m["deocclude"]["note"]
    assert (out / "m/plots/per_image.csv").is_file() and (out / "m/plots/examples_occluded.png").is_file()
    assert "mean face (baseline)" in (out / "m/table.md").read_text()
    assert res["p90_mm_clean"] == m["p90_mm_clean"]


def test_codec_answers_json_obj_and_overlay(setup, real_samples):
    from PIL import Image

    from faceparse.bundle import load_bundle
    from faceparse.models import preprocess
    from faceparse.serve.codecs import Item, codec_for
    from faceparse.serve.imaging import Options

    model, meta = load_bundle(setup / "bundle")
    codec = codec_for("recon3d")
    photo = Image.open(real_samples / "0.jpg").convert("RGB")
    items = [Item(0, None, photo, preprocess(photo, SIZE), Options(SIZE, f)) for f in codec.formats]
    answers = codec.run(model, meta, items, None, None, "7")
    body = json.loads(answers[0][0])
    assert answers[0][1] == "application/json" and body["model_version"] == "7"
    assert len(body["identity"]) == 100 and len(body["sh"]) == 27 and body["pose"]["f"] > 0
    pts = np.asarray(body["landmarks"])
    assert pts.shape == (68, 2) and (pts > 0).all() and (pts < photo.size[0]).all()
    obj = answers[1][0].decode()
    assert obj.count("\nv ") + obj.startswith("v ") == 9409 and obj.count("\nf ") == 18460
    assert Image.open(__import__("io").BytesIO(answers[2][0])).size == photo.size
    assert codec.agreement(answers[0][0], answers[0][0]) == 1.0 and codec.agreement(b"x", answers[0][0]) is None


def test_reconstruct_command_writes_every_file_and_names_a_broken_photo(setup, real_samples, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    r = CliRunner().invoke(app, ["reconstruct", str(real_samples / "1.jpg"), str(tmp_path / "broken.jpg"),
                                 "--model", str(setup / "bundle"), "--out", str(tmp_path / "out"), "--quiet"])
    assert r.exit_code == 1, r.output
    rec = json.loads((tmp_path / "out" / "reconstruct.json").read_text())
    good, bad = rec["results"]
    assert good["ok"] and not bad["ok"] and "broken.jpg" in bad["input"]
    assert len(rec["models"]["recon3d"]["bundle_sha256"]) == 64
    for key in ("obj", "coeffs", "overlay"):
        assert Path(good[key]).is_file()
    assert json.loads(Path(good["coeffs"]).read_text())["image_size"] == good["size"]


def test_the_face_feature_loss_runs_with_a_user_torchscript_network(setup, tmp_path):
    from faceparse.face3d.loss import FaceFeatureLoss

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2), torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten())
    torch.jit.script(net).save(str(tmp_path / "face.pt"))
    loss = FaceFeatureLoss(str(tmp_path / "face.pt"), 32)
    image = torch.rand(2, 3, SIZE, SIZE)
    render = torch.rand(2, 3, SIZE, SIZE, requires_grad=True)
    value = loss(image, render, torch.ones(2, 1, SIZE, SIZE))
    value.backward()
    assert 0 <= float(value) <= 2 and render.grad.abs().sum() > 0
    assert float(loss(image, image, torch.ones(2, 1, SIZE, SIZE))) == pytest.approx(0.0, abs=1e-5)


def test_evaluate_scores_de_occluded_inputs_through_a_fisn_bundle(setup):
    """A random tiny FISN bundle carrying a random completion model: the de-occluded column is filled and names it."""
    from faceparse.bundle import read_meta, save_bundle
    from faceparse.evaluate import evaluate
    from faceparse.serve.testing import completion_bundle

    comp = completion_bundle(setup / "chain", load_params(REPO / "params.yaml", ["registry.tracking_uri=null"]))
    fisn = get_stage("fisn")
    cmeta = read_meta(comp)
    meta = {"stage": "fisn", "num_classes": 19, "label_table": "celebamask-hq", "input_size": 32,
            "model_config": fisn.model_config({"model": {"overrides": {"generator": {"ngf": 8, "style_dim": 8, "spade_hidden": 8},
                                                                       "discriminator": {"ndf": 8}}}}),
            "completion": {k: v for k, v in cmeta.items() if k != "metrics"}}
    torch.manual_seed(0)
    save_bundle(setup / "fisn", fisn.build_model(meta), meta)
    out = setup / "eval-deocc"
    m = evaluate(params_for(setup, out, f"recon3d.evaluate.deocclude={setup / 'fisn'}"), bundle_dir=setup / "bundle",
                 progress=False)
    assert m["n_deoccluded"] == m["n_occluded"] == 2 and m["p90_mm_deoccluded"] == pytest.approx(m["p90_mm_mean_face"])
    assert m["deocclude"]["ref"] == str(setup / "fisn") and len(m["deocclude"]["bundle_sha256"]) == 64
    assert (out / "m/plots/examples_deoccluded.png").is_file()
