"""Each trainable stage, trained through its own ``train_step`` (the path `faceparse train` takes) on a handful
of fixed faces, must beat its trivial baseline on those faces by a wide margin: a stage that stops learning — a
detached head, a loss with the wrong sign, points or meshes that do not line up with the image — fails here in
seconds, not in an hour's training. (The parser: test_overfit.py; the FISN gated preset: test_fisn_gated.py.)"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from faceparse.config import load_params
from faceparse.data.manifest import load_split
from faceparse.data.synth import write_dataset
from faceparse.data.synth3d import write_dataset3d
from faceparse.ibug68 import landmark_metrics
from faceparse.stages import for_stage, get_stage
from faceparse.stages.landmarks.stage import eval_dataset
from faceparse.stages.recon3d.dataset import Recon3dDataset
from faceparse.stages.recon3d.scoring import landmark_nme
from faceparse.training.distributed import setup as dd_setup
from faceparse.training.loop import TrainContext

REPO = Path(__file__).resolve().parents[2]
SIZE = 64


def _context(stage, params, meta, lr: float) -> TrainContext:
    torch.manual_seed(0)
    model = stage.build_model(meta)
    opts = stage.optimizers(model, type("Cfg", (), {"lr": lr})())
    ctx = TrainContext(params, None, dd_setup("cpu"), meta, model, stage.step_module(model), opts, {})
    stage.prepare(ctx)
    return ctx


def _fit(stage, ctx: TrainContext, data: dict, steps: int, batch_size: int) -> list[float]:
    """``steps`` steps on batches drawn (fixed seed) from ``data``: batches that change keep a batch-normed
    network from fitting one batch's statistics."""
    g = torch.Generator().manual_seed(0)
    n = len(next(iter(data.values())))
    ctx.model.train()
    losses = []
    for _ in range(steps):
        pick = torch.randperm(n, generator=g)[:batch_size]
        losses.append(float(stage.train_step(ctx, {k: v[pick] for k, v in data.items()}).detach()))
    return losses


def _stack(ds, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([torch.as_tensor(ds[i][k]) for i in range(len(ds))]) for k in keys}


def _settle_batch_norm(model: torch.nn.Module, images: torch.Tensor) -> None:
    """Batch-norm statistics of ``images`` exactly (MobileNetV3's momentum 0.01 needs ~500 steps to get there
    by itself; a real training has thousands)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None                      # a cumulative average: one pass gives the batch's statistics
    model.train()
    with torch.no_grad():
        model(images)


def test_the_landmark_stage_learns_sixteen_faces(tmp_path):
    """68 points on 16 painted faces, framed as the photo path frames a detection: after 300 steps the model's
    NME on them is under half the mean shape's (untrained, or trained with a broken head: about equal)."""
    data = write_dataset(tmp_path / "ds", n=16, size=SIZE, seed=3, occlusion_prob=0.0,
                         splits={"train": 1.0, "val": 0.0, "test": 0.0}, progress=False)
    st = get_stage("landmarks")
    p = for_stage(load_params(REPO / "params.yaml", [f"data.dir={data}", "landmarks.model.presets.small.width=0.5",
                                                    # one plain look: the inference extras are not what is tested
                                                    "landmarks.model.presets.small.flip_test=false",
                                                    "landmarks.model.presets.small.refine=0",
                                                    f"landmarks.train.input_size={SIZE}", "landmarks.train.init=null"]),
                  "landmarks")
    frames = {"train": load_split(data, "train")}
    meta = {"model_config": st.model_config(p), **st.data_meta({}, p, frames)}
    ctx = _context(st, p, meta, lr=2e-3)
    batch = _stack(eval_dataset(frames["train"], meta, SIZE), ("image", "points"))
    losses = _fit(st, ctx, batch, 300, batch_size=8)
    _settle_batch_norm(ctx.model, batch["image"])
    ctx.model.eval()
    with torch.no_grad():
        pred = ctx.model(batch["image"]).numpy()
    m = landmark_metrics(pred, batch["points"].numpy(), mean_shape=np.asarray(meta["mean_shape"]))
    print(f"landmarks: loss {losses[0]:.4f} → {losses[-1]:.4f}; NME {m['nme']:.4f} vs mean shape {m['mean_shape_nme']:.4f}")
    assert m["nme"] < 0.5 * m["mean_shape_nme"], m


@pytest.fixture(scope="module")
def faces3d(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("learn3d")
    write_dataset3d(root / "data", 8, size=SIZE, splits={"train": 1.0, "val": 0.0, "test": 0.0}, progress=False,
                    occlusion_prob=0.0)
    return root / "data"


def _landmark_error(model, batch: dict) -> float:
    """Mean NME of the mesh's projected 68 landmark vertices against the true points."""
    with torch.no_grad():
        y = model(batch["image"]).float()
    return float(np.mean(landmark_nme(model.landmarks(y).numpy(), batch["points"].numpy())))


def test_the_3d_stage_learns_eight_faces(faces3d):
    """The 3DMM regressor on 8 rendered faces: its zero-initialised head starts at the mean face in the mean
    pose; after 60 steps of eq. 16 the projected landmarks sit at under half that start's error."""
    st = get_stage("recon3d")
    p = for_stage(load_params(REPO / "params.yaml", [f"recon3d.data.dir={faces3d}", "recon3d.model.overrides.width=8",
                                                    f"recon3d.train.input_size={SIZE}", "recon3d.evaluate.deocclude=null"]),
                  "recon3d")
    meta = {"model_config": st.model_config(p), "input_size": SIZE, **st.data_meta({}, p)}
    ctx = _context(st, p, meta, lr=2e-3)
    batch = _stack(Recon3dDataset(load_split(faces3d, "train"), SIZE), ("image", "points", "parse", "coeffs"))
    ctx.model.eval()
    before = _landmark_error(ctx.model, batch)
    losses = _fit(st, ctx, batch, 60, batch_size=8)
    ctx.model.eval()
    after = _landmark_error(ctx.model, batch)
    print(f"recon3d: loss {losses[0]:.4f} → {losses[-1]:.4f}; landmark NME {before:.4f} → {after:.4f}")
    assert after < 0.5 * before, (before, after)
