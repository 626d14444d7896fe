"""Small U-Nets for the mask-aware half of de-occlusion: the occlusion head (photo → occluder logit) and the
inpainting generator (the photo with the occluder erased, its mask, optionally M_γ → the fill).

Gated convolutions (Yu et al., "Free-Form Image Inpainting with Gated Convolution", ICCV 2019): each layer
learns a soft gate per pixel and channel, so features computed from erased pixels can be switched off —
what a plain convolution over a hole cannot do.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class GatedConv(nn.Module):
    """conv → ELU(features) · sigmoid(gate)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, 2 * cout, 3, stride, padding=dilation, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, g = self.conv(x).chunk(2, dim=1)
        return F.elu(f) * torch.sigmoid(g)


class PlainConv(nn.Sequential):
    """conv → batch norm → ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    """Encoder of stride-2 blocks (``widths``), a dilated bottleneck (the receptive field a hole across an eye
    needs), a decoder of nearest-upsample + conv blocks with skips; a 1×1 head to ``out_ch``."""

    def __init__(self, in_ch: int, out_ch: int, widths: tuple[int, ...] = (32, 64, 128, 128), gated: bool = True):
        super().__init__()
        block = GatedConv if gated else PlainConv
        self.stem = block(in_ch, widths[0])
        self.downs = nn.ModuleList(block(a, b, stride=2) for a, b in zip(widths[:-1], widths[1:]))
        self.middle = nn.Sequential(*(block(widths[-1], widths[-1], dilation=d) for d in (2, 4)))
        self.ups = nn.ModuleList(block(b + a, a) for a, b in zip(widths[:-1], widths[1:]))
        self.head = nn.Conv2d(widths[0], out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = self.middle(skips.pop())
        for up in reversed(self.ups):
            skip = skips.pop()
            y = up(torch.cat([F.interpolate(y, size=skip.shape[-2:], mode="nearest"), skip], dim=1))
        return self.head(y)


class OcclusionHead(nn.Module):
    """photo in [−1, 1] (B, 3, S, S) → occluder logits (B, S, S)."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 96)):
        super().__init__()
        self.net = UNet(3, 1, widths, gated=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image).squeeze(1)


class Inpainter(nn.Module):
    """(photo in [−1, 1], mask (B, S, S) bool, target map (B, S, S) class ids — read when ``map_channels`` is
    the number of classes) → the photo with the masked pixels replaced by the network's fill (outside the mask
    the photo itself, exactly)."""

    def __init__(self, map_channels: int = 0, widths: tuple[int, ...] = (32, 64, 128, 128)):
        super().__init__()
        self.map_channels = int(map_channels)
        self.net = UNet(3 + 1 + self.map_channels, 3, widths, gated=True)

    def forward(self, image: torch.Tensor, mask: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        m = mask.to(image.dtype).unsqueeze(1)
        maps = F.one_hot(target, self.map_channels).permute(0, 3, 1, 2).to(image.dtype) if self.map_channels else None
        parts = [image * (1 - m), m] + ([maps] if maps is not None else [])
        fill = torch.tanh(self.net(torch.cat(parts, dim=1)))
        return image * (1 - m) + fill * m
