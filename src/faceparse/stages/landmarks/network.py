"""MobileNetV3 (Howard et al., ICCV 2019, "Searching for MobileNetV3") written here, and the landmark regressor.

torchvision cannot be imported beside the CPU torch wheel, so the backbone follows the paper's tables:
Table 1 (Large) and Table 2 (Small) — a 3×3 stride-2 stem conv (16, h-swish), inverted residual blocks
(1×1 expand → k×k depthwise → optional squeeze-and-excite → 1×1 project, BatchNorm after each conv,
ReLU or h-swish as the table's NL column says, a residual when stride 1 and in = out), a 1×1 conv to 960
(Large) / 576 (Small), global average pooling and a BN-free 1×1 conv (= Linear) to 1280 / 1024 with
h-swish. Choices where the paper is silent follow the reference implementations (TF-slim / torchvision):
the SE squeeze width is ``make_divisible(expanded / 4, 8)`` with ReLU inside and a hard-sigmoid gate;
channels under a width multiplier are rounded by ``make_divisible(c · width, 8)``; BN eps 1e-3 (momentum: see BN_MOMENTUM); the 1280 / 1024 head width is not scaled by the multiplier (the head is ours, not the paper's
classifier). Small's last 1×1 conv carries SE in Table 2, but the reference code leaves it out (the paper's
parameter count matches that), so it is left out here too.

``MobileNetV3`` is the classifier (``classifier(1000)`` reproduces the paper's 5.4 M / 2.5 M parameters);
``MobileNetV3Landmarks`` regresses ``num_points`` (x, y) in normalised image coordinates (x / W, y / H,
continuous convention: the image spans [0, 1]²) with a linear output, so that ``set_mean_shape`` can make
the untrained model predict the mean training shape exactly.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ...ibug68 import IBUG_FLIP

# (kernel, expanded, out, SE, activation, stride) — the bneck rows of Table 1 and Table 2.
LARGE = [
    (3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1), (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1),
]
SMALL = [
    (3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1), (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1),
]
ARCHS = {"large": (LARGE, 960, 1280), "small": (SMALL, 576, 1024)}   # blocks, last conv, head width

LANDMARK_PRESETS: dict[str, dict[str, Any]] = {
    # the seed's setting: MobileNetV3-Large at 256² input
    "large": {"arch": "large", "width": 1.0, "num_points": 68, "dropout": 0.2, "input_size": 256},
    # trains in minutes on 2 CPU cores: tests, CI and `make run`
    "small": {"arch": "small", "width": 0.5, "num_points": 68, "dropout": 0.2, "input_size": 128},
}
_CFG_KEYS = {"arch", "width", "num_points", "dropout", "input_size", "head", "flip_test", "refine"}
HEADS = ("fc", "integral")
# momentum 0.1 (PyTorch's default), not the reference's 0.01: that one is tuned for ImageNet-length runs;
# over a few hundred steps its running statistics stay near their initial values and eval mode is wrong
BN_EPS, BN_MOMENTUM = 1e-3, 0.1


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor`` without losing more than 10 % (the reference rule)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _act(kind: str) -> nn.Module:
    return nn.Hardswish() if kind == "HS" else nn.ReLU()


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: str | None = None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)]
    if act is not None:
        layers.append(_act(act))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel gate: pool → 1×1 (ReLU) → 1×1 → hard-sigmoid, multiplied onto the input."""

    def __init__(self, channels: int):
        super().__init__()
        squeeze = make_divisible(channels / 4, 8)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.relu, self.gate = nn.ReLU(), nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    """One bneck row: expand (skipped when expanded = in) → depthwise → [SE] → linear project (+ skip)."""

    def __init__(self, cin: int, k: int, exp: int, cout: int, se: bool, act: str, stride: int):
        super().__init__()
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(conv_bn(cin, exp, 1, act=act))
        layers.append(conv_bn(exp, exp, k, stride, groups=exp, act=act))
        if se:
            layers.append(SqueezeExcite(exp))
        layers.append(conv_bn(exp, cout, 1))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3(nn.Module):
    """Backbone + head: features → global average pool → Linear(head, h-swish, dropout) → Linear(outputs)."""

    def __init__(self, arch: str = "large", width: float = 1.0, num_outputs: int = 1000, dropout: float = 0.2):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width}")
        blocks, last, head = ARCHS[arch]
        ch = lambda c: make_divisible(c * width, 8)  # noqa: E731
        cin = ch(16)
        layers: list[nn.Module] = [conv_bn(3, cin, 3, 2, act="HS")]
        for k, exp, out, se, act, stride in blocks:
            layers.append(InvertedResidual(cin, k, ch(exp), ch(out), se, act, stride))
            cin = ch(out)
        layers.append(conv_bn(cin, ch(last), 1, act="HS"))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(ch(last), head), nn.Hardswish(), nn.Dropout(dropout))
        self.out = nn.Linear(head, num_outputs)
        self.arch, self.width = arch, float(width)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.head(self.features(x).mean((2, 3))))


def classifier(num_classes: int = 1000, arch: str = "large", width: float = 1.0) -> MobileNetV3:
    """The paper's ImageNet classifier (for checking the parameter count against Tables 3 / 4)."""
    return MobileNetV3(arch, width, num_classes)


class IntegralHead(nn.Module):
    """The features of strides 4, 8, 16 and 32 fused (upsampled to stride 4, concatenated, 1×1 convs) into one
    heatmap per point; the point is the heatmap's softmax-weighted mean position (integral regression,
    Sun et al. 2018): still a head that regresses (x, y), but translation-equivariant, which a small dataset
    of faces anywhere in the frame needs (a pooled FC readout stayed at the mean shape here)."""

    def __init__(self, channels: list[int], num_points: int, hidden: int = 64):
        super().__init__()
        self.fuse = conv_bn(sum(channels), hidden, 1, act="HS")
        self.maps = nn.Conv2d(hidden, num_points, 1)

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        size = taps[0].shape[-2:]
        up = [taps[0], *(nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False) for t in taps[1:])]
        logits = self.maps(self.fuse(torch.cat(up, 1)))                 # (B, P, h, w)
        b, p, h, w = logits.shape
        prob = logits.flatten(2).softmax(-1).view(b, p, h, w)
        xs = (torch.arange(w, device=logits.device, dtype=prob.dtype) + 0.5) / w   # cell centres, [0, 1]
        ys = (torch.arange(h, device=logits.device, dtype=prob.dtype) + 0.5) / h
        return torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)], -1)


class MobileNetV3Landmarks(MobileNetV3):
    """(B, 3, H, W) in [-1, 1], H = W ≥ 64 → (B, num_points, 2) = (x / W, y / H).

    ``head="fc"``: the pooled features → Linear (the seed's "fully connected to the 68 points"; linear,
    unbounded, starts at the mean shape); ``head="integral"``: :class:`IntegralHead` over fused features."""

    def __init__(self, arch: str = "large", width: float = 1.0, num_points: int = 68, dropout: float = 0.2,
                 head: str = "fc", flip_test: bool = False, refine: int = 0):
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {num_points}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        super().__init__(arch, width, 2 * num_points, dropout)
        self.num_points, self.head_kind, self.flip_test = int(num_points), head, bool(flip_test)
        self.refine = int(refine)
        if (self.flip_test or self.refine) and self.num_points != 68:
            raise ValueError("flip_test and refine need the 68 iBUG points")
        if head == "integral":
            del self.head, self.out
            self.integral = IntegralHead([t.shape[1] for t in self._taps(torch.zeros(1, 3, 64, 64), probe=True)],
                                         self.num_points)

    @torch.no_grad()
    def _probe(self, x):
        was = self.training
        self.eval()
        try:
            return self._taps(x)
        finally:
            self.train(was)

    def _taps(self, x: torch.Tensor, probe: bool = False) -> list[torch.Tensor]:
        """The last feature maps at strides 4, 8, 16 and 32."""
        if probe:
            return self._probe(x)
        by_size: dict[int, torch.Tensor] = {}
        for layer in self.features:
            x = layer(x)
            by_size[x.shape[-1]] = x
        sizes = sorted(by_size, reverse=True)
        return [by_size[s] for s in sizes[-4:]]

    def set_mean_shape(self, mean: torch.Tensor) -> None:
        """Bias ← mean shape, weight ← 0: an untrained FC model predicts the mean shape (the baseline) and
        training starts from it rather than from random points. The integral head starts at the centre."""
        if self.head_kind != "fc":
            return
        mean = torch.as_tensor(mean, dtype=self.out.bias.dtype)
        if mean.shape != (self.num_points, 2):
            raise ValueError(f"mean shape must be ({self.num_points}, 2), got {tuple(mean.shape)}")
        with torch.no_grad():
            self.out.weight.zero_()
            self.out.bias.copy_(mean.reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or min(x.shape[2:]) < 64:
            raise ValueError(f"input must be (B, 3, H, W) with H, W >= 64, got {tuple(x.shape)}")
        if self.training:
            return self._points(x)
        out = self.look(x)
        for _ in range(self.refine):
            # look again at the crop the photo path would take of a face with these points (align.placement)
            theta, origin, ax, ay = face_frame(out)
            crop = nn.functional.grid_sample(x, nn.functional.affine_grid(theta, list(x.shape), align_corners=False),
                                             mode="bilinear", padding_mode="reflection", align_corners=False)
            q = self.look(crop)
            out = origin[:, None] + q[..., :1] * ax[:, None] + q[..., 1:] * ay[:, None]
        return out

    def look(self, x: torch.Tensor) -> torch.Tensor:
        """One look at ``x`` as it is framed (with ``flip_test``, averaged with the mirrored look): what the
        photo path asks of a crop it framed itself from a detected face (measured on the synthetic val split:
        a second look only helps a loose frame)."""
        out = self._points(x)
        if self.flip_test:
            # flip testing (the field's habit): the mirrored image's points, mirrored back (x → 1 − x) and
            # re-indexed by the iBUG left/right permutation, averaged with the direct prediction
            f = self._points(x.flip(-1))[:, torch.tensor(IBUG_FLIP.tolist(), device=x.device)]
            out = (out + torch.stack([1 - f[..., 0], f[..., 1]], -1)) / 2
        return out

    def _points(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)   # depthwise + 1×1 convs: ~20 % faster training on CPU
        if self.head_kind == "integral":
            return self.integral(self._taps(x))
        return super().forward(x).view(x.shape[0], self.num_points, 2)


def face_frame(points: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``faceparse.align.placement`` in torch, for a batch of 68 normalised points (B, 68, 2): the crop's
    ``affine_grid`` matrix (B, 2, 3) and its origin / side vectors (B, 2) in the image's [0, 1]² frame."""
    p = points.float()
    e0, e1 = p[:, 36:42].mean(1), p[:, 42:48].mean(1)
    e, ee = (e0 + e1) / 2, e1 - e0
    em = (p[:, 48] + p[:, 54]) / 2 - e
    rot = lambda v: torch.stack([-v[:, 1], v[:, 0]], -1)  # noqa: E731
    x = ee - rot(em)
    side = torch.maximum(ee.norm(dim=-1) * 2.0, em.norm(dim=-1) * 1.8)
    x = x * (side / x.norm(dim=-1).clamp_min(1e-9))[:, None]
    y = rot(x)
    origin, ax, ay = e + 0.1 * em - x - y, 2 * x, 2 * y
    shift = 2 * origin - 1 + ax + ay       # affine_grid's [-1, 1] pixel-centre frame → the crop's [0, 1]
    theta = torch.stack([torch.stack([ax[:, 0], ay[:, 0], shift[:, 0]], -1),
                         torch.stack([ax[:, 1], ay[:, 1], shift[:, 1]], -1)], 1)
    return theta, origin, ax, ay


def build_landmark_model(cfg: Mapping[str, Any]) -> MobileNetV3Landmarks:
    """Model from a config / preset dict (``arch``, ``width``, ``num_points``, ``dropout``; ``input_size`` is
    the data's setting and is accepted but not used here)."""
    unknown = set(cfg) - _CFG_KEYS
    if unknown:
        raise ValueError(f"unknown landmark model keys {sorted(unknown)} (known: {sorted(_CFG_KEYS)})")
    # a key left out (or None) takes the constructor's default: the defaults live in one signature
    return MobileNetV3Landmarks(**{k: v for k, v in cfg.items() if k != "input_size" and v is not None})
