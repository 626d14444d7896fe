"""FISN's losses (Zhao & Qi eq. 6–9): hinge GAN loss over a multiscale discriminator, feature matching (eq. 7)
and a perceptual loss (eq. 8) on a frozen feature network; eq. 9 = L_GAN + 10·L_fm + 10·L_per.

Discriminator outputs are :class:`faceparse.stages.fisn.network.MultiscaleDiscriminator`'s: a list over scales of
lists of layer features whose last entry is the patch logits. Feature networks (no download anywhere):

- ``VGG19Features.from_state_dict(path)``: torchvision's ``vgg19`` state dict (``features.N.weight``),
  relu1_1 … relu5_1 weighted 1/32, 1/16, 1/8, 1/4, 1 (SEAN's weights); inputs in [−1, 1] are mapped to
  ImageNet's normalisation, which torchvision's weights expect;
- ``ParserEncoderFeatures(fpliif_model)``: a frozen copy of the FP-LIIF encoder's three levels (full, 1/2,
  1/4 size; weights 1/4, 1/2, 1 by depth, like VGG's), taking the same [−1, 1] images the parser does.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

DOutput = Sequence[Sequence[torch.Tensor]]


def d_hinge_loss(real: DOutput, fake: DOutput) -> torch.Tensor:
    """E[max(0, 1 − D(real))] + E[max(0, 1 + D(fake))], averaged over the discriminators."""
    terms = [F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real, fake)]
    return torch.stack(terms).mean()


def g_hinge_loss(fake: DOutput) -> torch.Tensor:
    """−E[D(fake)], averaged over the discriminators."""
    return torch.stack([-f[-1].mean() for f in fake]).mean()


def feature_matching_loss(fake: DOutput, real: DOutput) -> torch.Tensor:
    """Eq. 7: L1 between D's intermediate features (the logits excluded) on generated and real images,
    summed over layers, averaged over discriminators; real features are targets (no gradient)."""
    terms = [sum(F.l1_loss(f, r.detach()) for f, r in zip(fs[:-1], rs[:-1])) for fs, rs in zip(fake, real)]
    return torch.stack(terms).mean()


class FrozenFeatures(nn.Module):
    """A feature network that never trains: no gradients to its weights, always in eval mode."""

    weights: tuple[float, ...] = ()

    def freeze(self) -> "FrozenFeatures":
        self.requires_grad_(False)
        return self.train(False)

    def train(self, mode: bool = True):
        return super().train(False)   # a parent's .train() must not switch it (batch norm, dropout)


# torchvision's vgg19 `features` up to relu5_1: conv widths, "M" = 2×2 max pool
_VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
_VGG19_TAPS = (1, 6, 11, 20, 29)   # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 in that Sequential


class VGG19Features(FrozenFeatures):
    """VGG-19 relu1_1…relu5_1 (random weights unless loaded with :meth:`from_state_dict`)."""

    weights = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in _VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
                cin = v
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.freeze()

    @classmethod
    def from_state_dict(cls, path) -> "VGG19Features":
        """Load torchvision's vgg19 state dict (a file of ``features.N.weight``/``bias``; the classifier's keys
        are ignored). ValueError naming the file when it is missing or does not fit."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"VGG-19 weights file not found: {path} (torchvision's vgg19 state dict; "
                             "nothing is downloaded)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"{path}: cannot read a VGG-19 state dict ({type(e).__name__}: {e})") from None
        net = cls()
        own = net.features.state_dict()
        state = {k[len("features."):]: v for k, v in (state.items() if isinstance(state, dict) else ())
                 if k.startswith("features.") and k[len("features."):] in own}
        missing = sorted(set(own) - set(state), key=_key_order)
        wrong = [f"features.{k} {tuple(v.shape)} (want {tuple(own[k].shape)})" for k, v in state.items()
                 if tuple(v.shape) != tuple(own[k].shape)]
        problems = ([f"missing {['features.' + k for k in missing]}"] if missing else []) + \
                   ([f"wrong shapes {wrong}"] if wrong else [])
        if problems:
            raise ValueError(f"{path} is not torchvision's vgg19 state dict: {'; '.join(problems)}")
        net.features.load_state_dict(state)
        return net

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _VGG19_TAPS:
                out.append(x)
        return out


def _key_order(k: str) -> tuple[int, str]:
    n, _, rest = k.partition(".")
    return int(n), rest


class ParserEncoderFeatures(FrozenFeatures):
    """The FP-LIIF encoder's outputs (groups 1, 2, 3: full, 1/2, 1/4 size), from a frozen copy so the parser
    itself is untouched."""

    weights = (1 / 4, 1 / 2, 1.0)

    def __init__(self, fpliif_model: nn.Module):
        super().__init__()
        self.encoder = copy.deepcopy(fpliif_model.encoder)
        self.freeze()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        z, s1, s2 = self.encoder(x, return_skips=True)
        return [s1, s2, z]


class PerceptualLoss(nn.Module):
    """Eq. 8: Σ_l w_l · mean |φ_l(fake) − φ_l(real)| (the mean: each layer normalised by its size)."""

    def __init__(self, net: FrozenFeatures, weights: Sequence[float] | None = None):
        super().__init__()
        self.net = net
        self.weights = tuple(net.weights if weights is None else weights)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            targets = self.net(real)
        feats = self.net(fake)
        if len(feats) != len(self.weights):
            raise ValueError(f"{len(self.weights)} perceptual weights for {len(feats)} feature layers")
        return sum(w * F.l1_loss(f, t) for w, f, t in zip(self.weights, feats, targets))


def perceptual_network(spec: Any, parser_model: nn.Module | None = None) -> FrozenFeatures:
    """``"vgg19:PATH"`` or ``{"network": "vgg19", "weights": PATH}`` → VGG19Features; ``"parser"`` (or
    ``{"network": "parser"}``) → ParserEncoderFeatures(parser_model)."""
    if isinstance(spec, str):
        kind, _, path = spec.partition(":")
        spec = {"network": kind, "weights": path or None}
    kind = str((spec or {}).get("network", ""))
    if kind == "vgg19":
        if not spec.get("weights"):
            raise ValueError("perceptual network vgg19 needs a weights file (vgg19:PATH); nothing is downloaded")
        return VGG19Features.from_state_dict(spec["weights"])
    if kind == "parser":
        if parser_model is None:
            raise ValueError("perceptual network 'parser' needs the FP-LIIF parser model (parser_model=...)")
        return ParserEncoderFeatures(parser_model)
    raise ValueError(f"unknown perceptual network {kind!r}: use vgg19:PATH or parser")


def generator_loss(d_fake: DOutput, d_real: DOutput, fake: torch.Tensor, real: torch.Tensor,
                   perceptual: PerceptualLoss | None = None, w_gan: float = 1.0, w_fm: float = 10.0,
                   w_per: float = 10.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 9: w_gan·L_GAN + w_fm·L_fm + w_per·L_per (L_per left out without a perceptual loss); returns the
    total and its unweighted parts, detached, for logging (no device sync here)."""
    parts = {"gan": g_hinge_loss(d_fake), "fm": feature_matching_loss(d_fake, d_real)}
    total = w_gan * parts["gan"] + w_fm * parts["fm"]
    if perceptual is not None:
        parts["per"] = perceptual(fake, real)
        total = total + w_per * parts["per"]
    return total, {k: v.detach() for k, v in parts.items()}
