"""The recon3d stage's params: its section ``recon3d:`` and the params resolved for it."""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Literal, Optional, get_type_hints

from pydantic import create_model

from ...face3d.fit_config import FitConfig
from ...schema import BaseParams, Data, Evaluate, Registry, Section, Splits, Train


class Synth3d(Section):
    """``recon3d.data.synth3d``: the synthetic 3D set (faceparse.data.synth3d)."""
    n: Optional[int] = None
    seed: Optional[int] = None
    occlusion_prob: Optional[float] = None
    test_occlusion_prob: Optional[float] = None
    splits: Optional[Splits] = None


class Recon3dData(Data):
    size: Optional[int] = 128               # faceparse.data.synth3d's renders
    synth3d: Optional[Synth3d] = None


class Recon3dModel(Section):
    """``recon3d.model``: a ResNet preset of faceparse.models.resnet.PRESETS and the face model's sizes."""
    preset: Optional[str] = None
    overrides: Optional[dict[str, Any]] = None
    n_id: Optional[int] = 100               # identity modes regressed (ICT has 100)
    n_exp: Optional[int] = 53               # expression blendshapes (ICT has 53)
    n_albedo: Optional[int] = 16            # mesh-Laplacian eigenvectors per colour channel
    head_scale: Optional[dict[str, float]] = None


class Recon3dLoss(Section):
    """``recon3d.loss``: eq. 16's weights (faceparse.face3d.loss)."""
    w_lmk: Optional[float] = None
    w_pix: Optional[float] = None
    w_reg: Optional[float] = None
    w_id: Optional[float] = None
    w_exp: Optional[float] = None
    w_face: Optional[float] = None
    w_shape: Optional[float] = None
    face_net: Optional[str] = None
    face_net_size: Optional[int] = None
    attention: Optional[Literal["face", "features"]] = None
    attention_low: Optional[float] = None


def _fit_fields() -> dict[str, Any]:
    """FitConfig's fields as pydantic (type, default) pairs: its defaults are the section's, kept in one place."""
    hints = get_type_hints(FitConfig)
    return {f.name: (hints[f.name], f.default) for f in fields(FitConfig)}


Recon3dFit = create_model(
    "Recon3dFit", __base__=Section, **_fit_fields(),
    landmarks=(Optional[str], None),     # landmark bundle / models:/ URI (null: the shipped one)
    parser=(Optional[str], None))        # parser bundle / models:/ URI (null: the shipped one)
Recon3dFit.__doc__ = """``recon3d.fit``: per-face fitting after the regressor (faceparse.face3d.fit; issue #32) —
identity, expression and pose against the landmark stage's 68 points and the parser's outline under the model's
priors (Levenberg–Marquardt, ``steps`` iterations), then optionally ``photo_steps`` Adam steps on the photometric
term over the visible skin (the completion stage's occlusion mask taken out). Used by the evaluation
(``p90_mm_fitted_*``), `faceparse reconstruct` and the chain. Every field but the two models is
faceparse.face3d.fit_config.FitConfig's, with its default (the ones measured in docs/stages/recon3d.md)."""


class Recon3dEvaluate(Evaluate):
    batch_size: Optional[int] = 16
    fit_faces: Optional[int] = None     # fit the first N test faces of each condition (null: all; ~0.3 s a face)
    deocclude: Optional[str] = None
    deocclude_registered: Optional[str] = None


class Recon3dSection(Section):
    """``recon3d:``: the 3D reconstruction stage's sections (its own data: the synthetic 3D set)."""
    data: Optional[Recon3dData] = None
    model: Optional[Recon3dModel] = None
    loss: Optional[Recon3dLoss] = None
    fit: Optional[Recon3dFit] = None
    train: Optional[Train] = None
    evaluate: Optional[Recon3dEvaluate] = None
    registry: Optional[Registry] = None


class Recon3dParams(BaseParams):
    """Params resolved for the recon3d stage: its data / model / loss / evaluate sections."""
    data: Optional[Recon3dData] = None
    model: Optional[Recon3dModel] = None
    loss: Optional[Recon3dLoss] = None
    fit: Optional[Recon3dFit] = None
    evaluate: Optional[Recon3dEvaluate] = None


SECTION = Recon3dSection     # params.yaml `recon3d:`
RESOLVED = Recon3dParams    # faceparse.stages.for_stage(params, "recon3d")
