"""The recon3d stage's params: its section ``recon3d:`` and the params resolved for it."""
from __future__ import annotations

from typing import Any, Literal, Optional

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


class Recon3dEvaluate(Evaluate):
    batch_size: Optional[int] = 16
    deocclude: Optional[str] = None
    deocclude_registered: Optional[str] = None


class Recon3dSection(Section):
    """``recon3d:``: the 3D reconstruction stage's sections (its own data: the synthetic 3D set)."""
    data: Optional[Recon3dData] = None
    model: Optional[Recon3dModel] = None
    loss: Optional[Recon3dLoss] = None
    train: Optional[Train] = None
    evaluate: Optional[Recon3dEvaluate] = None
    registry: Optional[Registry] = None


class Recon3dParams(BaseParams):
    """Params resolved for the recon3d stage: its data / model / loss / evaluate sections."""
    data: Optional[Recon3dData] = None
    model: Optional[Recon3dModel] = None
    loss: Optional[Recon3dLoss] = None
    evaluate: Optional[Recon3dEvaluate] = None


SECTION = Recon3dSection     # params.yaml `recon3d:`
RESOLVED = Recon3dParams    # faceparse.stages.for_stage(params, "recon3d")
