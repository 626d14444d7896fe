"""FP-LIIF: the encoder + the LIIF decoder (or the U-Net decoder of the paper's ablation)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .encoder import Encoder, conv3
from .liif import LIIFDecoder, make_coord

MAX_OUT = 4096


def check_images(images) -> None:
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if not images.is_floating_point():
        raise ValueError(f"images must be a float tensor (normalised RGB), got dtype {images.dtype}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
    if images.shape[2] < 4 or images.shape[3] < 4:
        raise ValueError(f"images must be at least 4×4 pixels, got {tuple(images.shape[2:])}")


def check_out_size(out_size) -> tuple[int, int]:
    hw = (out_size, out_size) if isinstance(out_size, int) else tuple(out_size) if isinstance(out_size, (tuple, list)) else ()
    if len(hw) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in hw):
        raise ValueError(f"out_size must be an int or (H, W) ints, got {out_size!r}")
    if not all(1 <= v <= MAX_OUT for v in hw):
        raise ValueError(f"out_size must be within 1..{MAX_OUT}, got {out_size!r}")
    return hw


class UNetDecoder(nn.Module):
    """Convolutional decoder on the same encoder (the paper's 'without LIIF decoder' ablation):
    upsample the latent grid ×2 twice with skip connections from groups 2 and 1, then classify."""

    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.up2 = nn.Sequential(conv3(2 * width, width), nn.ReLU(inplace=True), conv3(width, width), nn.ReLU(inplace=True))
        self.up1 = nn.Sequential(conv3(2 * width, width), nn.ReLU(inplace=True), conv3(width, width), nn.ReLU(inplace=True))
        self.cls = nn.Conv2d(width, num_classes, 1)

    def forward(self, z, s1, s2) -> torch.Tensor:
        x = F.interpolate(z, size=s2.shape[-2:], mode="bilinear", align_corners=False)
        x = self.up2(torch.cat([x, s2], 1))
        x = F.interpolate(x, size=s1.shape[-2:], mode="bilinear", align_corners=False)
        return self.cls(self.up1(torch.cat([x, s1], 1)))


class FPLIIF(nn.Module):
    def __init__(self, num_classes: int, width: int = 64, groups=(2, 6, 16), norm: str = "instance",
                 decoder: str = "liif", unfold: bool = True, reduce=(256, 64), hidden=(256, 256, 256, 256),
                 ensemble: bool = True, query_chunk: int = 16384, **_ignored):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be ≥ 2, got {num_classes}")
        if decoder not in ("liif", "unet"):
            raise ValueError(f"model.decoder must be liif | unet, got {decoder!r}")
        if not hidden:
            raise ValueError("model.hidden must list at least one hidden layer width")
        self.num_classes = num_classes
        self.decoder_kind = decoder
        self.encoder = Encoder(width, tuple(groups), norm)
        if decoder == "liif":
            self.decoder = LIIFDecoder(width, num_classes, tuple(reduce), tuple(hidden), unfold, ensemble, query_chunk)
        else:
            self.decoder = UNetDecoder(width, num_classes)
        # Reference (paper-accounting) formulation instead of the factorised first layer: for MAC
        # counting and the equivalence test only.
        self.factorized = True

    def encode(self, images: torch.Tensor):
        check_images(images)
        if self.decoder_kind == "unet":
            return self.encoder(images, return_skips=True)
        return self.decoder.prepare(self.encoder(images))

    def query(self, state, coord: torch.Tensor) -> torch.Tensor:
        """Logits (B, Q, classes) at (row, col) coordinates in [-1, 1], shape (B, Q, 2)."""
        if self.decoder_kind == "unet":
            logits = self.decoder(*state)
            grid = coord.flip(-1).unsqueeze(1)  # grid_sample wants (x, y)
            return F.grid_sample(logits, grid, mode="bilinear", align_corners=False)[:, :, 0].transpose(1, 2)
        return self.decoder.query(state, coord, self.factorized)

    def forward(self, images: torch.Tensor, out_size=256) -> torch.Tensor:
        """Logits (B, classes, H, W) at any output size from one input: the LIIF property."""
        h, w = check_out_size(out_size)
        state = self.encode(images)
        if self.decoder_kind == "unet":
            logits = self.decoder(*state)
            return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        coord = make_coord(h, w, images.device).unsqueeze(0).expand(images.shape[0], -1, -1)
        out = self.query(state, coord)
        return out.transpose(1, 2).reshape(images.shape[0], self.num_classes, h, w)
