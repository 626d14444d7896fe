"""Fitting after the regressor (issue #32, ``recon3d.fit``), on the stage's side: what the fit reads in a face
crop — the landmark stage's 68 points, the parser's map (the face's outline, the visible skin) and the
completion stage's occlusion mask (Algorithm 1 of those two) — and the fit of a batch
(faceparse.face3d.fit). Shared by the evaluation (``p90_mm_fitted_*``) and `faceparse reconstruct`.

Models: ``recon3d.fit.landmarks`` and ``recon3d.fit.parser`` (bundle dirs or ``models:/`` URIs; null: the
ones shipped in ``faceparse/pretrained/``). Both look at the regressor's own input (the crop framed as the 3D
faces are, taken whole: the landmark model refines its frame itself, as the completion stage runs it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...api import pretrained_dir
from ...bundle import WEIGHTS, load_bundle
from ...face3d.fit import SKIN, FitConfig, FitResult, fit_faces, outline_targets
from ...hashing import sha256_file
from ...labels import CELEBAMASK_HQ
from ...registry import resolve_bundle
from ...tracking import tracking_uri
from ..completion.algorithm import Settings, complete
from .params import Recon3dFit


def fit_config(params: dict[str, Any]) -> FitConfig | None:
    """The ``fit`` section of the stage's resolved params as a FitConfig (its defaults filled in), or None
    when ``fit.enabled`` is false."""
    sec = Recon3dFit.model_validate(params.get("fit") or {}).model_dump()
    if not sec["enabled"]:
        return None
    return FitConfig.of({k: v for k, v in sec.items() if k not in ("landmarks", "parser")})


@dataclass
class Observed:
    """What the fit reads in a batch of crops (all at the crop's size S)."""
    points: torch.Tensor        # (B, 68, 2) in [0, 1]
    alpha: np.ndarray           # (B, S, S) uint8: the parser's map M_α
    occlusion: np.ndarray       # (B, S, S) bool: the completion stage's occlusion mask
    visible: torch.Tensor       # (B, 1, S, S) float: skin classes of M_α, occluded pixels removed
    outline: torch.Tensor       # (B, 3, S, S): face3d.fit.outline_targets


class FitInputs:
    """The landmark model and the parser the fit reads faces with."""

    def __init__(self, landmarks, landmarks_meta: dict, parser, parser_meta: dict, versions: dict[str, Any]):
        self.landmarks, self.landmarks_meta = landmarks, landmarks_meta
        self.parser, self.parser_meta = parser, parser_meta
        self.versions = versions

    @classmethod
    def load(cls, params: dict[str, Any]) -> "FitInputs":
        sec = dict(params.get("fit") or {})
        loaded, versions = {}, {}
        for stage in ("landmarks", "parser"):
            ref = str(sec.get(stage) or pretrained_dir(stage))
            bdir, info = resolve_bundle(ref, tracking_uri=_tracking(params) if ref.startswith(("models:/", "runs:/")) else None)
            net, meta = load_bundle(bdir)
            if meta.get("stage", "parser") != stage:
                raise ValueError(f"recon3d.fit.{stage}: {ref} is a {meta.get('stage', 'parser')!r} model, not a {stage} one")
            loaded[stage] = (net, meta)
            versions[stage] = {"ref": ref, "model_uri": info.get("uri") if info.get("version") else None,
                               "version": info.get("version"), "bundle_sha256": sha256_file(Path(bdir) / WEIGHTS)}
        return cls(*loaded["landmarks"], *loaded["parser"], versions)

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> Observed:
        """Crops (B, 3, S, S) in [-1, 1] → the points, maps and masks the fit reads."""
        s = x.shape[-1]
        dev = next(self.landmarks.parameters()).device
        points = self.landmarks(_resize(x, int(self.landmarks_meta.get("input_size", s))).to(dev)).float().cpu()
        px = _resize(x, int(self.parser_meta.get("input_size", s))).to(next(self.parser.parameters()).device)
        alpha = self.parser(px, s).argmax(1).to(torch.uint8).cpu().numpy()
        settings = Settings()
        occ = np.stack([complete(a, p * s, settings).occlusion for a, p in zip(alpha, points.numpy())])
        skin = np.isin(alpha, [CELEBAMASK_HQ.index(n) for n in SKIN]) & ~occ
        outline = np.stack([outline_targets(a, o) for a, o in zip(alpha, occ)])
        return Observed(points, alpha, occ, torch.from_numpy(skin).float()[:, None], torch.from_numpy(outline))


def _tracking(params):
    return tracking_uri(params)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False,
                                           antialias=True).clamp(-1, 1)


def fit_batch(model, x: torch.Tensor, y0: torch.Tensor, cfg: FitConfig, obs: Observed,
              points: torch.Tensor | None = None) -> FitResult:
    """Fit the regressor's coefficients ``y0`` of crops ``x`` (B, 3, S, S) in [-1, 1] with what ``obs`` saw
    (``points``: other 68 points instead of the landmark model's, e.g. the true ones for an upper bound)."""
    dev = y0.device
    pts = (obs.points if points is None else points).to(dev)
    return fit_faces(model.renderer, y0.float(), pts, cfg, ((x.float() + 1) / 2).to(dev), obs.visible.to(dev),
                     outline=obs.outline.to(dev))


def fit_each(model, x: torch.Tensor, y0: torch.Tensor, cfg: FitConfig, obs: Observed,
             points: torch.Tensor | None = None) -> tuple[torch.Tensor, list[float]]:
    """``fit_batch`` one face at a time (what a photo costs): (fitted coefficients (B, K), seconds per face)."""
    ys, secs = [], []
    for i in range(len(x)):
        sub = Observed(obs.points[i:i + 1], obs.alpha[i:i + 1], obs.occlusion[i:i + 1], obs.visible[i:i + 1],
                       obs.outline[i:i + 1])
        r = fit_batch(model, x[i:i + 1], y0[i:i + 1], cfg, sub, None if points is None else points[i:i + 1])
        ys.append(r.y)
        secs.append(r.seconds)
    return (torch.cat(ys) if ys else y0.clone()), secs
