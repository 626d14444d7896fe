"""The FISN stage's model on the one loop: generator + carried completion model, the GAN step, region PSNR."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ...defaults import section_defaults
from ...losses_gan import d_hinge_loss, generator_loss
from ...training.distributed import all_reduce_sum
from ...training.loop import to_device
from ..completion.algorithm import Settings
from .params import FisnLoss
from .unet import Inpainter

BETAS = (0.0, 0.9)
LOSS_DEFAULTS = section_defaults(FisnLoss)   # fisn.loss: eq. 9's weights and the perceptual network


def erase_occluded(image: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The image with the occlusion mask the maps imply (a face class in the target map, none in the source
    map) set to 0 (mid-grey): the generator input when ``model_config.erase_occluded``."""
    face = torch.as_tensor(Settings().face_ids().astype(np.int64), device=image.device)
    mask = torch.isin(target, face) & ~torch.isin(source, face)
    return image.masked_fill(mask.unsqueeze(1), 0.0)


def generate(generator: nn.Module, image, source, target, erase: bool, mask=None) -> torch.Tensor:
    """The generator's image: a mask-aware one (Inpainter) fills ``mask``; FISN's SEAN generator reads the
    maps (the image erased where they imply an occlusion, when ``erase``)."""
    if isinstance(generator, Inpainter):
        return generator(image, mask, target)
    return generator(erase_occluded(image, source, target) if erase else image, source, target)


def occlusion_loss(logits: torch.Tensor, occluder: torch.Tensor) -> torch.Tensor:
    """BCE (occluder pixels weighted 3×: they are ~4 % of a face) + soft Dice per image."""
    truth = occluder.to(logits.dtype)
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * truth).sum((1, 2)) + 1) / (p.sum((1, 2)) + truth.sum((1, 2)) + 1)
    bce = nn.functional.binary_cross_entropy_with_logits(logits, truth, pos_weight=logits.new_tensor(3.0))
    return bce + dice.mean()


def dilate(mask: torch.Tensor, k: int) -> torch.Tensor:
    """A (B, H, W) bool mask grown by ``k`` pixels (a square structuring element)."""
    if k <= 0:
        return mask
    return nn.functional.max_pool2d(mask.float().unsqueeze(1), 2 * k + 1, 1, k).squeeze(1) > 0


class FisnModel(nn.Module):
    """generator + discriminator (+ the occlusion head) (+ the carried completion model): one state dict, one
    bundle. forward(image, source_map, target_map) → the generator's image in [−1, 1]; with an occlusion head
    the generator fills the occluder it finds (``occlusion_mask``)."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, completion: nn.Module | None = None,
                 erase: bool = False, occlusion: nn.Module | None = None):
        super().__init__()
        self.generator, self.discriminator, self.completion, self.erase = generator, discriminator, completion, erase
        self.occlusion = occlusion
        if completion is not None:
            completion.requires_grad_(False)

    def occlusion_mask(self, image: torch.Tensor) -> torch.Tensor | None:
        """(B, S, S) bool: the occluder the head finds (None without a head: the maps' mask is used)."""
        return None if self.occlusion is None else self.occlusion(image) > 0

    def forward(self, image: torch.Tensor, source: torch.Tensor, target: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is None and self.occlusion is not None:
            mask = self.occlusion_mask(image)
        return generate(self.generator, image, source, target, self.erase, mask)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.completion is not None:
            self.completion.train(False)   # frozen: its batch norms keep their statistics
        return self


class GanStep(nn.Module):
    """What DDP wraps: forward("D", ...) → discriminator loss; forward("G", ...) → (generator loss, parts).
    With an occlusion head (the gated preset) the G step also trains the head on the true occluder, and the
    generator fills the true occluder grown by 0–2 px (a predicted mask is never exact)."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module, erase: bool = False,
                 occlusion: nn.Module | None = None):
        super().__init__()
        self.generator, self.discriminator, self.erase, self.occlusion = generator, discriminator, erase, occlusion

    def forward(self, mode: str, image, source, target, real, perceptual=None, weights=None, zero_unused=False,
                region=None, occluder=None):
        mask = None if occluder is None else dilate(occluder, int(torch.randint(0, 3, ())))
        if mode == "D":
            with torch.no_grad():
                fake = generate(self.generator, image, source, target, self.erase, mask)
            loss = d_hinge_loss(self.discriminator(real, target), self.discriminator(fake.detach(), target))
            if zero_unused:
                loss = loss + 0.0 * sum(p.sum() for p in self.generator.parameters())
            return loss, {}
        w = {**LOSS_DEFAULTS, **(weights or {})}   # a weight left out is its params default
        if not image_terms(w):
            # the head alone learns (a head-only fine-tune): the generator's forward would be wasted work
            total, parts = self._head_loss(image, occluder, w, image.new_zeros(()), {})
            if zero_unused:
                idle = [*self.generator.parameters(), *self.discriminator.parameters()]
                total = total + 0.0 * sum(p.sum() for p in idle)
            return total, parts
        fake = generate(self.generator, image, source, target, self.erase, mask)
        total, parts = self._adversarial(fake, real, target, perceptual, w)
        hole = mask if mask is not None else region
        if float(w["w_l1"]):
            parts["l1"] = nn.functional.l1_loss(fake.float(), real)
            total = total + float(w["w_l1"]) * parts["l1"]
        if float(w["w_hole"]) and hole is not None:
            # L1 inside the hole, per pixel of it (0 for a batch without one)
            m = hole.unsqueeze(1).to(fake.dtype)
            parts["hole"] = ((fake.float() - real).abs() * m).sum() / (3 * m.sum()).clamp_min(1.0)
            total = total + float(w["w_hole"]) * parts["hole"]
        total, parts = self._head_loss(image, occluder, w, total, parts)
        if zero_unused and "gan" not in parts:
            # DDP wants a gradient for every parameter it holds; the idle discriminator gets zeros
            total = total + 0.0 * sum(p.sum() for p in self.discriminator.parameters())
        return total, {k: v.detach() for k, v in parts.items()}

    def _head_loss(self, image, occluder, w, total, parts) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The occlusion head's term added to ``total`` (nothing without a head or its truth)."""
        if self.occlusion is not None and occluder is not None:
            parts["occlusion"] = occlusion_loss(self.occlusion(image).float(), occluder)
            total = total + float(w["w_occlusion"]) * parts["occlusion"]
        return total, {k: v.detach() for k, v in parts.items()}

    def _adversarial(self, fake, real, target, perceptual, w) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. 9's terms; none computed (nor the discriminator run) when their weights are all 0."""
        if not any(float(w[k]) for k in ("w_gan", "w_fm", "w_per")):
            return fake.new_zeros(()), {}
        d_fake = self.discriminator(fake, target)
        with torch.no_grad():
            d_real = self.discriminator(real, target)
        return generator_loss(d_fake, d_real, fake.float(), real, perceptual, float(w["w_gan"]),
                              float(w["w_fm"]), float(w["w_per"]))


def image_terms(w: dict[str, float]) -> bool:
    """Whether any loss term reads the generator's image."""
    w = {**LOSS_DEFAULTS, **w}
    return any(float(w[k]) for k in ("w_gan", "w_fm", "w_per", "w_l1", "w_hole"))


def adversarial(weights: dict[str, float]) -> bool:
    """Whether the run trains the discriminator at all (w_gan or w_fm above 0)."""
    return any(float(weights.get(k, 0.0)) for k in ("w_gan", "w_fm"))


class RegionPSNR:
    """Validation: per-image PSNR inside the occluded face region (generator output and the input as it is,
    against the clean image), averaged over the images that have such a region; summed across ranks."""

    def __init__(self):
        self.sums = torch.zeros(5, dtype=torch.float64)   # Σ psnr_out, Σ psnr_input, n, occluder ∩, occluder ∪
        self.total: torch.Tensor | None = None

    def update(self, model, batch, device, autocast) -> None:
        image = to_device(batch["image"], device)
        with autocast:
            mask = model.occlusion_mask(image)
            out = model(image, batch["source"].to(device), batch["target"].to(device), mask=mask)
        if mask is not None and "occluder" in batch:
            truth = batch["occluder"].to(device)
            self.sums[3:] += torch.tensor([float((mask & truth).sum()), float((mask | truth).sum())],
                                          dtype=torch.float64)
        out = to_uint8(out.float().cpu())
        image, real = to_uint8(batch["image"]), to_uint8(batch["real"])
        for o, i, r, reg in zip(out, image, real, batch["region"].numpy()):
            if reg.any():
                self.sums[:3] += torch.tensor([psnr(o, r, reg), psnr(i, r, reg), 1.0], dtype=torch.float64)

    def reduce(self, dd) -> None:
        self.total = all_reduce_sum(self.sums.clone(), dd)

    def compute(self) -> dict[str, Any]:
        s_out, s_in, n, inter, union = (float(v) for v in self.total)
        out = {"psnr_out": s_out / n if n else float("nan"), "psnr_input": s_in / n if n else float("nan"),
               "n_occluded_images": int(n)}
        if union:
            out["occlusion_iou"] = inter / union   # the head's mask against every true occluder pixel
        return out


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [−1, 1] → (B, H, W, 3) uint8."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def psnr(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None, peak: float = 255.0) -> float:
    """PSNR (dB) of uint8 images over ``region``'s pixels (all channels); 100 dB when identical there."""
    d = a.astype(np.float64) - b.astype(np.float64)
    if region is not None:
        d = d[region]
    mse = float(np.mean(d * d)) if d.size else float("nan")
    return 100.0 if mse == 0 else 10.0 * float(np.log10(peak * peak / mse))
