"""ResNet (He et al. 2016) written here — torchvision does not import beside the CPU torch wheel — as the
coefficient regressor of the 3D reconstruction stage (Zhao & Qi: ResNet-50 at 224², after Deng et al.).

``resnet50``: bottleneck blocks [3, 4, 6, 3], width 64 (torchvision's layout: 23.5 M parameters before the
head). ``small``: basic blocks [1, 1, 1, 1], width 16 — a narrow ResNet-10 for the CPU demo at 96–128².
The head is average pooling (to one vector; ``grid: 4`` in ``small``: to 4 × 4 cells, see ResNet) → one
linear layer to the coefficient vector, **zero-initialised**
(weights and bias), so the untrained network answers all-zero coefficients: the mean face, frontal, under
ambient light (Deng et al.: training otherwise tends to stay stuck away from the face).
"""
from __future__ import annotations

from torch import nn

PRESETS = {
    "resnet50": {"block": "bottleneck", "layers": [3, 4, 6, 3], "width": 64},
    "small": {"block": "basic", "layers": [1, 1, 1, 1], "width": 16, "grid": 4},
}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, 1, 1, bias=False), nn.BatchNorm2d(planes))
        self.skip = _shortcut(cin, planes, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + self.skip(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
            nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
            nn.Conv2d(planes, out, 1, bias=False), nn.BatchNorm2d(out))
        self.skip = _shortcut(cin, out, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.body(x) + self.skip(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """images (B, 3, S, S) in [-1, 1] → (B, num_outputs)."""

    def __init__(self, num_outputs: int, block: str = "bottleneck", layers=(3, 4, 6, 3), width: int = 64,
                 grid: int = 1):
        super().__init__()
        kind = {"basic": BasicBlock, "bottleneck": Bottleneck}[block]
        self.stem = nn.Sequential(nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(3, 2, 1))
        stages, cin = [], width
        for i, n in enumerate(layers):
            planes = width * 2 ** i
            for j in range(int(n)):
                stages.append(kind(cin, planes, 2 if (j == 0 and i > 0) else 1))
                cin = planes * kind.expansion
        self.stages = nn.Sequential(*stages)
        # grid > 1: average-pool to a grid × grid map and flatten it, so the head still sees where things are
        # (recon3d: pose learns from it, measured). Adam moves each head weight by about lr per step, so a head
        # with grid² times the inputs would move its outputs grid² times as fast: its output is divided by grid².
        self.pool = nn.AdaptiveAvgPool2d(int(grid))
        self.fc = nn.Linear(cin * int(grid) ** 2, num_outputs)
        self.out_scale = 1.0 / int(grid) ** 2
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():   # residual branches start near identity (torchvision's zero_init_residual)
            if isinstance(m, (BasicBlock, Bottleneck)):
                nn.init.zeros_(m.body[-1].weight)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x):
        out = self.fc(self.pool(self.stages(self.stem(x))).flatten(1))
        return out * self.out_scale if self.out_scale != 1.0 else out


RESNET_KEYS = ("block", "layers", "width", "grid")


def build_resnet(cfg: dict, num_outputs: int) -> ResNet:
    """ResNet from the config keys it knows (RESNET_KEYS; others belong to the model around it); a key left
    out takes the constructor's default."""
    kw = {k: cfg[k] for k in RESNET_KEYS if cfg.get(k) is not None}
    if "layers" in kw:
        kw["layers"] = tuple(kw["layers"])
    return ResNet(num_outputs, **kw)
