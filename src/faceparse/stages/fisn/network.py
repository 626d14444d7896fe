"""FISN (Zhao & Qi, 3.3): the de-occlusion generator and its multiscale discriminator, written from the
paper's equations 2–5 (SEAN / SPADE ideas only; none of their code).

Generator: a Pix2PixHD global generator (7×7 stem, strided 3×3 convs, residual blocks, upsampling decoder,
7×7 + tanh) whose encoder is conditioned on the parser map M_α by SFT (eq. 2) and whose residual blocks
normalise with SEAN (eq. 3–5): batch statistics, then a per-pixel scale and shift made from the face's
per-region style codes (pooled inside M_α's regions) placed into the regions of the target map M_γ.
There is no instance / batch norm layer anywhere; SEANNorm's statistics are computed functionally.

Choices the paper leaves open (written down here, reported with the code):

- style codes come from a separate small style encoder (three convs, down to 1/4, tanh, bilinear back
  to full size) pooled by region average at full resolution, as SEAN does; each SEANNorm gives them its own
  per-class linear + ReLU (one einsum for all classes) before broadcasting;
- a target region absent from the source (e.g. the eyes under sunglasses: in M_γ, not in M_α) takes a
  learned per-class default code of its SEANNorm layer, substituted before the per-class transform;
- modulation is x = 1 + γ, y = β (SPADE's form of eq. 3: a layer starts near the identity); γ, β blend the
  style branch and a SPADE branch (convs on M_γ) with a learned sigmoid weight per layer, as SEAN does;
- SEANNorm keeps running statistics (momentum 0.1) for eval mode, so a served image's output does not
  depend on what else is in its batch; under DDP the batch statistics are each rank's own;
- SFT uses the same 1 + γ form, one per encoder level (stem and each strided conv); the decoder upsamples
  with Pix2PixHD's stride-2 transposed convs (a quarter of nearest-×2 + conv's cost); the discriminator is
  Pix2PixHD's 64→512 PatchGAN with spectral norm (SEAN's choice for its hinge loss), no instance norm.

Presets (params / MACs at the preset size, batch 1; MACs of convolutions and matmuls counted by
torch.utils.flop_counter.FlopCounterMode, see :func:`preset_report`):

    tiny   64²: generator   1.27 M params,  0.39 GMAC; discriminator (2 scales) 0.36 M params, 0.032 GMAC
    paper 256²: generator 111.5  M params, 89.4  GMAC; discriminator (2 scales) 5.57 M params, 5.01 GMAC

Most of the paper generator is SEAN's 512-d style path at the 32² × 512 bottleneck (per-class linears
40 M params; the style → γ, β convs 38 M params and ~39 GMAC), as in SEAN itself.
"""
from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .unet import Inpainter, OcclusionHead

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"size": 64, "generator": {"ngf": 16, "n_down": 2, "n_res": 4, "style_dim": 32, "spade_hidden": 32},
             "discriminator": {"ndf": 16, "n_layers": 3, "num_d": 2}},
    "paper": {"size": 256, "generator": {"ngf": 64, "n_down": 3, "n_res": 4, "style_dim": 512},
              "discriminator": {"ndf": 64, "n_layers": 3, "num_d": 2}},
    # mask-aware: an occlusion head finds the occluder, a gated-convolution U-Net fills it (faceparse.stages.
    # fisn.unet; issue #31: the SEAN generator has to find the occluder itself and loses to cv2.inpaint)
    "gated": {"size": 128, "generator": {"kind": "gated", "widths": [16, 32, 64, 128], "map_channels": 0},
              "discriminator": {"ndf": 16, "n_layers": 3, "num_d": 2}, "occlusion": {"widths": [16, 32, 64, 96]}},
}


def one_hot(seg: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    """(B, H, W) class ids → (B, K, H, W) one-hot masks."""
    if seg.dim() != 3 or seg.dtype != torch.long:
        raise ValueError(f"maps must be (B, H, W) long class ids, got {seg.dtype} {tuple(seg.shape)}")
    return F.one_hot(seg, num_classes).permute(0, 3, 1, 2).to(dtype)


def masks_at(masks: torch.Tensor, size) -> torch.Tensor:
    """One-hot masks resized by nearest neighbour (each pixel still in exactly one region)."""
    return masks if masks.shape[-2:] == tuple(size) else F.interpolate(masks, size=tuple(size), mode="nearest")


def region_pool(features: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Region-average pooling: (B, D, H, W) features, (B, K, H', W') masks → codes (B, K, D) and which
    regions are present (B, K) bool (absent ones get code 0, to be replaced by a default)."""
    # float32 even under autocast: a region's sum over 256² pixels overflows float16 (the meta device, where
    # preset_report counts MACs, has no autocast to switch off)
    dev = features.device.type
    with torch.autocast(dev, enabled=False) if dev in ("cpu", "cuda") else contextlib.nullcontext():
        masks = masks_at(masks, features.shape[-2:]).float()
        area = masks.sum((2, 3))
        codes = torch.einsum("bdhw,bkhw->bkd", features.float(), masks) / area.clamp_min(1.0).unsqueeze(-1)
    return codes, area > 0


def conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class SEANNorm(nn.Module):
    """Eq. 3–5: x · (z − μ) / σ + y, μ and σ per channel over batch and space (no affine of its own);
    x = 1 + γ, y = β per pixel from the style codes broadcast into the target regions, blended with SPADE's
    γ, β from the target map."""

    def __init__(self, channels: int, num_classes: int, style_dim: int, hidden: int = 128,
                 eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.default = nn.Parameter(torch.zeros(num_classes, style_dim))    # codes of absent source regions
        bound = style_dim ** -0.5                                            # nn.Linear's init, per class
        self.class_weight = nn.Parameter(torch.empty(num_classes, style_dim, style_dim).uniform_(-bound, bound))
        self.class_bias = nn.Parameter(torch.empty(num_classes, style_dim).uniform_(-bound, bound))
        self.style_gamma, self.style_beta = conv3(style_dim, channels), conv3(style_dim, channels)
        self.spade_shared = nn.Sequential(conv3(num_classes, hidden), nn.ReLU())
        self.spade_gamma, self.spade_beta = conv3(hidden, channels), conv3(hidden, channels)
        self.blend_gamma = nn.Parameter(torch.zeros(1))   # sigmoid → 0.5: both branches at first
        self.blend_beta = nn.Parameter(torch.zeros(1))

    def forward(self, z: torch.Tensor, codes: torch.Tensor, present: torch.Tensor,
                target: torch.Tensor) -> torch.Tensor:
        """z (B, C, H, W); codes (B, K, D) and present (B, K) from :func:`region_pool` on the source map;
        target (B, K, h, w) one-hot masks of the target map (any size: resized to z's)."""
        norm = F.batch_norm(z, self.running_mean, self.running_var, None, None, self.training,
                            self.momentum, self.eps)
        mask = masks_at(target, z.shape[-2:]).to(z.dtype)
        codes = torch.where(present.unsqueeze(-1), codes, self.default.to(codes.dtype))
        codes = F.relu(torch.einsum("bkd,kde->bke", codes, self.class_weight) + self.class_bias)
        style = torch.einsum("bke,bkhw->behw", codes, mask)
        hidden = self.spade_shared(mask)
        a_g, a_b = torch.sigmoid(self.blend_gamma), torch.sigmoid(self.blend_beta)
        gamma = a_g * self.style_gamma(style) + (1 - a_g) * self.spade_gamma(hidden)
        beta = a_b * self.style_beta(style) + (1 - a_b) * self.spade_beta(hidden)
        return norm * (1 + gamma) + beta


class SFT(nn.Module):
    """Eq. 2: SFT(F) = γ ⊙ F + β with (γ, β) from the parser map by small convs (γ = 1 + Δγ)."""

    def __init__(self, channels: int, num_classes: int, hidden: int = 32):
        super().__init__()
        self.shared = nn.Sequential(conv3(num_classes, hidden), nn.LeakyReLU(0.2))
        self.gamma, self.beta = conv3(hidden, channels), conv3(hidden, channels)

    def forward(self, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        h = self.shared(masks_at(masks, x.shape[-2:]).to(x.dtype))
        return x * (1 + self.gamma(h)) + self.beta(h)


class SEANResBlock(nn.Module):
    """SEAN → LeakyReLU → conv, twice, plus the identity."""

    def __init__(self, ch: int, num_classes: int, style_dim: int, spade_hidden: int = 128):
        super().__init__()
        self.norm0, self.norm1 = (SEANNorm(ch, num_classes, style_dim, spade_hidden) for _ in range(2))
        self.conv0, self.conv1 = conv3(ch, ch), conv3(ch, ch)

    def forward(self, x, codes, present, target):
        h = self.conv0(F.leaky_relu(self.norm0(x, codes, present, target), 0.2))
        return x + self.conv1(F.leaky_relu(self.norm1(h, codes, present, target), 0.2))


class StyleEncoder(nn.Module):
    """Image → style_dim features at full size (computed at 1/4, bilinear back up) for region pooling."""

    def __init__(self, ch: int, style_dim: int):
        super().__init__()
        self.body = nn.Sequential(conv3(3, ch), nn.LeakyReLU(0.2), conv3(ch, 2 * ch, 2), nn.LeakyReLU(0.2),
                                  conv3(2 * ch, 4 * ch, 2), nn.LeakyReLU(0.2), conv3(4 * ch, style_dim), nn.Tanh())

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.body(image), size=image.shape[-2:], mode="bilinear", align_corners=False)


class FISNGenerator(nn.Module):
    """forward(image (B, 3, H, W) in [−1, 1], source_map M_α, target_map M_γ (B, H, W) long) → (B, 3, H, W)
    in [−1, 1]; H and W divisible by 2**n_down."""

    def __init__(self, num_classes: int = 19, ngf: int = 64, n_down: int = 3, n_res: int = 4,
                 style_dim: int = 512, style_ch: int | None = None, spade_hidden: int = 128):
        super().__init__()
        self.num_classes, self.n_down = num_classes, n_down
        self.style = StyleEncoder(style_ch or ngf, style_dim)
        self.stem = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7))
        chs = [ngf * 2 ** i for i in range(n_down + 1)]
        self.downs = nn.ModuleList(conv3(chs[i], chs[i + 1], 2) for i in range(n_down))
        self.sfts = nn.ModuleList(SFT(c, num_classes) for c in chs)
        self.blocks = nn.ModuleList(SEANResBlock(chs[-1], num_classes, style_dim, spade_hidden)
                                    for _ in range(n_res))
        self.ups = nn.ModuleList(nn.Sequential(nn.ConvTranspose2d(chs[i + 1], chs[i], 3, 2, 1, output_padding=1),
                                               nn.ReLU())
                                 for i in reversed(range(n_down)))
        self.head = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh())

    def forward(self, image: torch.Tensor, source_map: torch.Tensor, target_map: torch.Tensor) -> torch.Tensor:
        self._check(image, source_map, target_map)
        src, tgt = one_hot(source_map, self.num_classes), one_hot(target_map, self.num_classes)
        codes, present = region_pool(self.style(image), src)
        x = F.relu(self.sfts[0](self.stem(image), src))
        for down, sft in zip(self.downs, self.sfts[1:]):
            x = F.relu(sft(down(x), src))
        for block in self.blocks:
            x = block(x, codes, present, tgt)
        for up in self.ups:
            x = up(x)
        return self.head(x)

    def _check(self, image, source_map, target_map) -> None:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (B, 3, H, W), got {tuple(image.shape)}")
        b, _, h, w = image.shape
        for name, m in (("source_map", source_map), ("target_map", target_map)):
            if tuple(m.shape) != (b, h, w):
                raise ValueError(f"{name} must be (B, H, W) = {(b, h, w)}, got {tuple(m.shape)}")
        if h % 2 ** self.n_down or w % 2 ** self.n_down:
            raise ValueError(f"image size {h}×{w} must be divisible by 2**n_down = {2 ** self.n_down}")


class PatchDiscriminator(nn.Module):
    """Pix2PixHD's PatchGAN: 4×4 convs (stride 2 ×n_layers, then 1), LeakyReLU 0.2; every layer's output."""

    def __init__(self, in_ch: int, ndf: int = 64, n_layers: int = 3, spectral: bool = True):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm if spectral else (lambda m: m)
        chs = [in_ch] + [min(ndf * 2 ** i, 512) for i in range(n_layers + 1)]
        strides = [2] * n_layers + [1]
        self.layers = nn.ModuleList(nn.Sequential(sn(nn.Conv2d(chs[i], chs[i + 1], 4, s, 2)), nn.LeakyReLU(0.2))
                                    for i, s in enumerate(strides))
        self.layers.append(nn.Sequential(sn(nn.Conv2d(chs[-1], 1, 4, 1, 2))))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """num_d PatchGANs on image ⊕ one-hot map, each next one on a 3×3 / stride-2 average-pooled input.
    forward → [per scale: [per layer features]], the last of each the patch logits."""

    def __init__(self, num_classes: int = 19, ndf: int = 64, n_layers: int = 3, num_d: int = 2,
                 spectral: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.scales = nn.ModuleList(PatchDiscriminator(3 + num_classes, ndf, n_layers, spectral)
                                    for _ in range(num_d))

    def forward(self, image: torch.Tensor, seg: torch.Tensor) -> list[list[torch.Tensor]]:
        x = torch.cat([image, one_hot(seg, self.num_classes, image.dtype)], 1)
        out = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out.append(d(x))
        return out


def build_generator(num_classes: int, cfg: dict[str, Any]) -> nn.Module:
    """A generator from its config: ``kind: gated`` → the mask-aware Inpainter, else FISNGenerator."""
    kw = {k: v for k, v in cfg.items() if k != "kind"}
    if cfg.get("kind", "sean") == "gated":
        return Inpainter(map_channels=num_classes if kw.get("map_channels") else 0, widths=tuple(kw["widths"]))
    return FISNGenerator(num_classes, **kw)


def build_occlusion(cfg: dict[str, Any] | None) -> OcclusionHead | None:
    return None if not cfg else OcclusionHead(widths=tuple(cfg["widths"]))


def build_preset(name: str, num_classes: int = 19) -> tuple[nn.Module, MultiscaleDiscriminator]:
    if name not in PRESETS:
        raise ValueError(f"unknown FISN preset {name!r}; known: {sorted(PRESETS)}")
    p = PRESETS[name]
    return build_generator(num_classes, p["generator"]), MultiscaleDiscriminator(num_classes, **p["discriminator"])


def network_report(config: dict[str, Any], size: int, num_classes: int = 19) -> dict[str, dict[str, float]]:
    """Params and GMACs (batch 1, at ``size``²) of the generator, discriminator and occlusion head a model
    config (``generator`` / ``discriminator`` / ``occlusion`` kwargs) builds, counted on the meta device."""
    with torch.device("meta"):
        gen = build_generator(num_classes, config["generator"])
        disc = MultiscaleDiscriminator(num_classes, **config["discriminator"])
        occ = build_occlusion(config.get("occlusion"))
        image = torch.zeros(1, 3, size, size)
        seg = torch.zeros(1, size, size, dtype=torch.long)
        mask = torch.zeros(1, size, size, dtype=torch.bool)
    nets = [("generator", gen, (image, mask, seg) if isinstance(gen, Inpainter) else (image, seg, seg)),
            ("discriminator", disc, (image, seg))] + ([("occlusion", occ, (image,))] if occ is not None else [])
    out = {}
    for key, net, args in nets:
        with FlopCounterMode(display=False) as counter:
            net(*args)
        out[key] = {"params": sum(p.numel() for p in net.parameters()), "gmacs": counter.get_total_flops() / 2e9}
    return out


def preset_report(name: str, num_classes: int = 19) -> dict[str, dict[str, float]]:
    """network_report of a preset at its own size."""
    if name not in PRESETS:
        raise ValueError(f"unknown FISN preset {name!r}; known: {sorted(PRESETS)}")
    return network_report(PRESETS[name], PRESETS[name]["size"], num_classes)
