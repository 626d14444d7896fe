"""The fit's settings (params ``recon3d.fit``; the method: faceparse.face3d.fit). Apart from the solver so that
the params schema (faceparse.stages.recon3d.params) takes its defaults from here without importing torch."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class FitConfig:
    """The fit's settings (params ``recon3d.fit``; see the module's docstring)."""
    enabled: bool = True
    steps: int = 12               # Levenberg–Marquardt iterations (landmarks, outline, priors)
    sigma_lmk: float = 0.06       # landmark noise (per point), fraction of the inter-ocular distance
    w_jaw: float = 0.5            # the jaw points' weight (they are the least sure)
    sigma_id: float = 1.0         # identity prior (ICT: N(0, 1) per mode)
    sigma_exp: float = 0.15       # expression prior (a pull to 0; weights in [0, 1])
    silhouette: bool = True       # (b) the outline term, when a parsing map is given
    sigma_sil: float = 0.04       # outline noise, fraction of the inter-ocular distance
    n_sil: float = 68.0           # the outline counts as this many independent points
    sil_after: int = 3            # LM iterations on the landmarks alone before the outline joins
    robust: float = 0.7           # Cauchy scale (in σ) of the landmark and outline residuals (0: plain squares)
    photo_steps: int = 0          # (c) Adam steps on the photometric term (0: none)
    light_steps: int = 6          # of which the first fit albedo and light alone
    lr: float = 0.01              # Adam's step for the photometric phase
    sigma_pix: float = 0.02       # the photometric term's noise (RGB in [0, 1])
    sigma_albedo: float = 0.2     # albedo prior (the Laplacian basis' coefficients)

    @classmethod
    def of(cls, d: dict[str, Any] | None) -> "FitConfig":
        d = {k: v for k, v in dict(d or {}).items() if v is not None}
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"recon3d.fit: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
