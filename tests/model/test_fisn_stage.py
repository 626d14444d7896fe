"""The de-occlusion (FISN) stage on the one path: a GAN step through the stage contract changes both networks;
kill-and-resume is exact for both named optimisers; evaluation writes the benchmark (true and predicted maps);
`faceparse deocclude` writes every file, names each model's version and names a broken photo (exit 1).
Tiny everything: 16 synthetic faces at 64², a width-8 generator at 32²."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from faceparse.cli import app
from faceparse.config import load_params
from faceparse.stages import for_stage, get_stage

REPO = Path(__file__).resolve().parents[2]
# the paper's SEAN generator with eq. 9's weights (+ the hole L1), as make run trained it before the gated preset
SMALL = ["fisn.model.preset=tiny", "fisn.train.init=null", "fisn.loss.w_gan=1", "fisn.loss.w_fm=10", "fisn.loss.w_per=10",
         "fisn.loss.w_l1=0", "fisn.loss.w_hole=100", "fisn.train.lr=1e-3", "fisn.train.occluded_only=true", "fisn.model.overrides.generator.ngf=8", "fisn.model.overrides.generator.style_dim=8",
         "fisn.model.overrides.generator.spade_hidden=8", "fisn.model.overrides.discriminator.ndf=8"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A 16-face dataset (test split all occluded) and a tiny completion bundle (random parser + landmarks)."""
    from faceparse.data.synth import write_dataset
    from faceparse.serve.testing import completion_bundle

    root = tmp_path_factory.mktemp("fisn")
    write_dataset(root / "data", 16, size=64, occlusion_prob=0.5, test_occlusion_prob=1.0,
                  splits={"train": 0.5, "val": 0.25, "test": 0.25}, progress=False)
    completion_bundle(root / "chain", load_params(REPO / "params.yaml", ["registry.tracking_uri=null"]))
    return root


def sets(root: Path, out: Path, *extra: str) -> list[str]:
    return [f"data.dir={root / 'data'}", f"validate.out_dir={root / 'validation'}",
            f"registry.tracking_uri=sqlite:///{root / 'mlflow.db'}", "registry.experiment=test-fisn",
            f"fisn.carry.completion={root / 'chain' / 'completion'}", "fisn.carry.registered_file=null",
            *SMALL, "fisn.train.epochs=2", "fisn.train.batch_size=4", "fisn.train.input_size=32",
            "fisn.train.report=false", f"fisn.train.run_dir={out / 'run'}", f"fisn.train.bundle_dir={out / 'model'}",
            f"fisn.evaluate.metrics_file={out / 'm/eval.json'}", f"fisn.evaluate.plots_dir={out / 'm/plots'}",
            f"fisn.evaluate.table_file={out / 'm/table.md'}", f"fisn.registry.registered_file={out / 'm/reg.json'}",
            *extra]


def params_for(root: Path, out: Path, *extra: str) -> dict:
    return for_stage(load_params(REPO / "params.yaml", sets(root, out, *extra)), "fisn")


def test_one_gan_step_changes_generator_and_discriminator(setup):
    from faceparse.data.manifest import load_split
    from faceparse.training.distributed import setup as dd_setup
    from faceparse.stages.fisn.dataset import FisnDataset
    from faceparse.training.loop import TrainContext

    st = get_stage("fisn")
    p = params_for(setup, setup / "step", f"fisn.loss.perceptual=parser:{setup / 'chain' / 'parser'}",
                   "fisn.carry.completion=null")
    meta = {"model_config": st.model_config(p), "num_classes": 19, "label_table": "celebamask-hq", "input_size": 32}
    torch.manual_seed(0)
    model = st.build_model(meta)
    assert model.completion is None
    opts = st.optimizers(model, type("Cfg", (), {"lr": 2e-4})())
    assert set(opts) == {"G", "D"} and opts["G"].param_groups[0]["betas"] == (0.0, 0.9)
    ctx = TrainContext(p, None, dd_setup("cpu"), meta, model, st.step_module(model), opts, {})
    st.prepare(ctx)
    ds = FisnDataset(load_split(setup / "data", "train"), setup / "data", 32)
    batch = {k: torch.stack([torch.as_tensor(ds[i][k]) for i in range(2)]) for k in ("image", "source", "target", "real", "region")}
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.train()
    loss = st.train_step(ctx, batch)
    assert torch.isfinite(loss) and loss.requires_grad
    after = model.state_dict()
    for net in ("generator", "discriminator"):
        changed = [k for k in before if k.startswith(net + ".") and not torch.equal(before[k], after[k])]
        assert changed, f"{net}: no parameter changed"
    assert ctx.state["tally"]["steps"] == 1 and {"d_loss", "g_gan", "g_fm", "g_per"} <= set(ctx.state["tally"])


def test_kill_and_resume_is_exact_for_both_optimisers(setup):
    from faceparse.train import train

    full = train(params_for(setup, setup / "a"), progress=False)
    killed = train(params_for(setup, setup / "b", "fisn.train.stop_after_epoch=1"), progress=False)
    assert killed["stopped_after_epoch"] == 1 and killed["bundle"] is None
    resumed = train(params_for(setup, setup / "b"), resume=True, progress=False)
    a = torch.load(setup / "a" / "run" / "last.pt", weights_only=True)
    b = torch.load(setup / "b" / "run" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and set(a["optimizers"]) == set(a["schedulers"]) == {"G", "D"}
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for name in ("G", "D"):
        sa, sb = a["optimizers"][name]["state"], b["optimizers"][name]["state"]
        assert sa.keys() == sb.keys() and all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)
    assert [h["train_loss"] for h in full["history"]] == [h["train_loss"] for h in resumed["history"]]
    assert resumed["val"] == full["val"] and full["val"]["n_occluded_images"] > 0
    meta = json.loads((setup / "a" / "model" / "bundle.json").read_text())
    assert meta["stage"] == "fisn" and meta["completion"]["stage"] == "completion"
    assert meta["carries"]["completion"]["ref"] == str(setup / "chain" / "completion")
    assert meta["perceptual"].startswith("parser encoder: " + str(setup / "chain" / "parser"))
    # the carried completion weights are the completion bundle's own
    comp = torch.load(setup / "chain" / "completion" / "weights.pt", weights_only=True)
    assert all(torch.equal(a["model"][f"completion.{k}"], v) for k, v in comp.items())


@pytest.mark.parametrize("maps", ["truth", "predicted"])
def test_evaluate_writes_the_benchmark(setup, maps):
    from faceparse.evaluate import evaluate
    from faceparse.train import train

    out = setup / "a"
    if not (out / "model" / "bundle.json").is_file():
        train(params_for(setup, out), progress=False)
    res = evaluate(params_for(setup, out, f"fisn.evaluate.maps={maps}"), progress=False)
    for key in ("psnr_out", "psnr_input", "psnr_inpaint", "ssim_out", "ssim_input", "ssim_inpaint", "parser_miou",
                "psnr_raw", "psnr_gain_db", "parser_miou_clean", "per_kind", "n_occluded_images"):
        assert key in res, key
    assert res["n_occluded_images"] == res["n_images"] == 4 and res["maps"] == maps
    for key in ("psnr_out", "psnr_input", "psnr_inpaint"):
        assert 0 < res[key] < 100, (key, res[key])
    assert 0 <= res["parser_miou"] <= 1 and -1 <= res["ssim_out"] <= 1
    if maps == "truth":   # the true maps' mask is the scored region: output = the raw generator there
        assert res["psnr_out"] == pytest.approx(res["psnr_raw"])
    written = json.loads((out / "m/eval.json").read_text())
    assert written["psnr_out"] == res["psnr_out"] and written["stage"] == "fisn"
    assert (out / "m/plots/examples.png").is_file() and (out / "m/plots/per_image.csv").is_file()
    assert "cv2.inpaint" in (out / "m/table.md").read_text()


def test_psnr_and_ssim_by_hand():
    from faceparse.stages.fisn.model import psnr
    from faceparse.stages.fisn.evaluate import region_ssim

    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[:2] = 10                                            # 16 pixels differ by 10 in every channel
    region = np.zeros((8, 8), bool)
    region[:4] = True                                     # 32 pixels scored: MSE = 100 · 16 / 32 = 50
    assert psnr(a, b, region) == pytest.approx(10 * np.log10(255 ** 2 / 50))
    assert psnr(a, a, region) == 100.0
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert region_ssim(x, x, np.ones((16, 16), bool)) == pytest.approx(1.0)
    assert region_ssim(x, 255 - x, np.ones((16, 16), bool)) < 0


def test_the_answer_is_the_photo_with_the_generator_output_pasted_into_the_mask():
    from faceparse.stages.fisn.photo import paste

    photo = np.full((8, 12, 3), 200, np.uint8)                # W 12 × H 8, generator at 4²
    raw = np.zeros((4, 4, 3), np.uint8)
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True                                       # the top-left quarter → 4 × 6 photo pixels
    out = paste(Image.fromarray(photo), raw, mask)
    assert out.shape == photo.shape
    assert (out[:4, :6] == 0).all() and (out[4:] == 200).all() and (out[:, 6:] == 200).all()


def test_deocclude_cli_writes_its_files_and_names_a_broken_photo(setup, real_samples, tmp_path):
    from faceparse.train import train

    out = setup / "a"
    if not (out / "model" / "bundle.json").is_file():
        train(params_for(setup, out), progress=False)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    face = next((setup / "data" / "clean").glob("*.jpg")).name      # an occluded synthetic face
    base = ["--params", str(REPO / "params.yaml"), *[x for s in sets(setup, out) for x in ("--set", s)]]
    r = CliRunner().invoke(app, ["deocclude", str(real_samples / "0.jpg"), str(tmp_path / "broken.jpg"),
                                 str(setup / "data" / "images" / face), "--model", str(out / "model"),
                                 "--out", str(tmp_path / "out"), "-q", *base])
    assert r.exit_code == 1, r.output
    assert "broken.jpg" in " ".join(r.output.split())
    stem = Path(face).stem
    # a synthetic face is an aligned crop with nothing for the photo detector: named as such, nothing written
    record = json.loads((tmp_path / "out" / "deocclude.json").read_text())
    assert [x["ok"] for x in record["results"]] == [True, False, False]
    assert record["results"][2]["no_face"] and not list((tmp_path / "out").glob(f"{stem}_*"))
    r = CliRunner().invoke(app, ["deocclude", "--no-detect", str(setup / "data" / "images" / face), "--model",
                                 str(out / "model"), "--out", str(tmp_path / "out"), "-q", *base])
    assert r.exit_code == 0, r.output
    for s in ("0", stem):
        for k in ("deoccluded", "raw", "alpha", "beta", "gamma", "mask", "sheet"):
            assert (tmp_path / "out" / f"{s}_{k}.png").is_file(), (s, k)
    photo = Image.open(real_samples / "0.jpg")
    assert Image.open(tmp_path / "out" / "0_deoccluded.png").size == photo.size     # the photo's own size
    assert Image.open(tmp_path / "out" / "0_raw.png").size == (32, 32)                # the generator's
    assert set(record["models"]) == {"fisn", "completion", "parser", "landmarks"}
    assert record["models"]["completion"]["carried"] is True
    # outside the occlusion mask the answer is the photo itself
    mask = np.asarray(Image.open(tmp_path / "out" / f"{stem}_mask.png").resize((64, 64), Image.NEAREST)) > 127
    out_img = np.asarray(Image.open(tmp_path / "out" / f"{stem}_deoccluded.png"))
    src = np.asarray(Image.open(setup / "data" / "images" / face).convert("RGB"))
    assert np.array_equal(out_img[~mask], src[~mask])
