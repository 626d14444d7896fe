"""Int8 inference for the FP-LIIF parser on x86 CPUs (issue #17).

What runs in int8: the decoder's hidden layers (the 256×256 GEMMs that take ~70 % of the time at 256 out),
through oneDNN's int8 linear (``torch.ops.onednn.qlinear_pointwise``). Weights: symmetric int8 per output
channel. Activations: static per-tensor uint8 scales from ranges calibrated on training images
(``calibrate``, recorded in the bundle by ``faceparse quantize``); each layer's bias, ReLU and
requantisation are fused into its GEMM, so the activations stay uint8 from the first hidden layer to the
last, and the ensemble blend and the last (19-class) layer run in fp32. The encoder stays fp32 (see
README, Benchmarks: its int8 convs were 1.2-1.5× faster but moved the latent grid ~10 %).

7-bit activations (0…127, fbgemm's ``reduce_range`` convention): without AVX-512 VNNI (this development
CPU is an AMD EPYC Zen 3: AVX2 only) the int8 dot product is vpmaddubsw, whose int16 sum of two u8×s8
products saturates above 32767; with u7 inputs it cannot (2·127·128 < 32768).
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn.functional as F

from .fpliif import FPLIIF
from .liif import LIIFDecoder, ensemble_geometry, make_coord
from ..stages import bundle_stage

PRECISIONS = ("fp32", "int8")
QMAX = 127           # activation levels (7 bits, see the module docstring)
CALIB_ROWS = 8192    # decoder rows per calibration GEMM (bounds memory)


def check_precision(precision: str) -> str:
    p = str(precision).lower()
    if p not in PRECISIONS:
        raise ValueError(f"precision must be one of {' | '.join(PRECISIONS)}, got {precision!r}")
    return p


def _quantizable(model) -> None:
    if not isinstance(model, FPLIIF) or model.decoder_kind != "liif" or not model.decoder.ensemble:
        raise ValueError("int8 covers the FP-LIIF parser with the LIIF decoder and its local ensemble")


# --- calibration ------------------------------------------------------------------------------------
def _hidden_maxima(dec: LIIFDecoder, state: dict, idx: torch.Tensor, rel: torch.Tensor) -> list[float]:
    """Max of the input of every hidden layer and of the last one's output (all post-ReLU, so ≥ 0)."""
    proj = state["proj"].reshape(-1, state["proj"].shape[-1])
    layers = list(dec.imnet[2:-1:2])
    mx = [0.0] * (len(layers) + 1)
    for s in range(0, idx.numel(), CALIB_ROWS):
        h = proj.index_select(0, idx[s:s + CALIB_ROWS]).addmm_(rel[s:s + CALIB_ROWS], state["wr_t"]).relu_()
        mx[0] = max(mx[0], float(h.max()))
        for i, lin in enumerate(layers):
            h = F.linear(h, lin.weight, lin.bias).relu_()
            mx[i + 1] = max(mx[i + 1], float(h.max()))
    return mx


def calibrate(model, batches: Iterable[torch.Tensor], out_size: int) -> dict[str, Any]:
    """Activation ranges of the int8 layers over ``batches`` of normalised images (B, 3, S, S), decoded at
    ``out_size``² → {"decoder_act_max": [...]}, JSON-able (what the bundle records)."""
    _quantizable(model)
    model.eval()
    dec_max: list[float] | None = None
    with torch.inference_mode():
        for x in batches:
            state = model.encode(x)
            coord = make_coord(out_size, out_size).unsqueeze(0).expand(x.shape[0], -1, -1)
            idx, rel, _ = ensemble_geometry(coord, *state["hw"])
            mx = _hidden_maxima(model.decoder, state, idx, rel)
            dec_max = mx if dec_max is None else [max(a, b) for a, b in zip(dec_max, mx)]
    if dec_max is None:
        raise ValueError("calibration needs at least one image")
    return {"decoder_act_max": dec_max}


# --- the int8 model ---------------------------------------------------------------------------------
def _qweight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-output-channel int8: (int8 weight, fp32 scale per output channel)."""
    w = w.detach().float()
    scale = w.abs().amax(1).clamp_min(1e-12) / 127
    return (w / scale[:, None]).round_().clamp_(-127, 127).to(torch.int8), scale


class Int8Hidden:
    """The decoder's hidden layers in int8, as a replacement for LIIFDecoder._decode_cpu_inference (same fp32
    first layer, fp32 blend + last layer; tiles of TILE queries). oneDNN's int8 linear (the kernel PyTorch's
    x86 inductor backend uses) takes plain uint8 tensors and fuses bias, ReLU and the requantisation; the last
    hidden layer writes fp32 directly, so no separate dequantisation pass."""

    # queries per tile: uint8 activations are a quarter of fp32's, so twice the fp32 path's tile still fits in
    # L2, and oneDNN's per-call cost is paid half as often (paper preset, 256 out, 2 threads: the int8 GEMMs
    # 2.06 s → 1.68 s per batch of 4 at 1024; 1.81 s at 2048)
    TILE = 1024

    def __init__(self, dec: LIIFDecoder, act_max: list[float]):
        layers = list(dec.imnet[2:-1:2])
        if len(act_max) != len(layers) + 1:
            raise ValueError(f"int8 calibration has {len(act_max)} decoder ranges, the model needs {len(layers) + 1}")
        self.scales = [max(float(m), 1e-8) / QMAX for m in act_max]
        self.layers = []
        for lin in layers:
            w8, w_scale = _qweight(lin.weight)
            self.layers.append((torch.ops.onednn.qlinear_prepack(w8, None), w_scale,
                                torch.zeros(w8.shape[0], dtype=torch.long), lin.bias.detach().float()))
        self.blend = dec._blend_and_classify

    def hidden(self, h: torch.Tensor) -> torch.Tensor:
        """First-layer pre-activations (fp32) → the last hidden layer's activations (fp32)."""
        # ReLU and the clip to the calibrated range in one pass: inputs stay within 7 bits
        h = h.clamp_(0, QMAX * self.scales[0])
        if not self.layers:
            return h
        # = quantize_per_tensor(...).int_repr() bit for bit (both round half to even), one pass fewer
        x = h.mul_(1.0 / self.scales[0]).round_().to(torch.uint8)
        last = len(self.layers) - 1
        for i, (w, w_scale, w_zp, bias) in enumerate(self.layers):
            out_scale, out_dtype = (1.0, torch.float32) if i == last else (self.scales[i + 1], None)
            x = torch.ops.onednn.qlinear_pointwise(x, self.scales[i], 0, w, w_scale, w_zp, bias, out_scale, 0,
                                                   out_dtype, "relu", [], "")
        return x

    def decode(self, state: dict, idx: torch.Tensor, rel: torch.Tensor, wts: torch.Tensor) -> torch.Tensor:
        proj = state["proj"].reshape(-1, state["proj"].shape[-1])
        t = self.TILE
        outs = []
        for s in range(0, wts.shape[0], t):
            e = min(s + t, wts.shape[0])
            h = proj.index_select(0, idx[4 * s:4 * e]).addmm_(rel[4 * s:4 * e], state["wr_t"])
            outs.append(self.blend(self.hidden(h), wts[s:e]))
        return torch.cat(outs)


def quantize_model(model, ranges: dict[str, Any]):
    """``model`` (in place) with its int8 layers switched on, from ``calibrate``'s ranges. CPU only."""
    _quantizable(model)
    if "decoder_act_max" not in ranges:
        raise ValueError("int8 calibration record has no decoder ranges: re-run `faceparse quantize`")
    if not torch.backends.mkldnn.is_available():
        raise ValueError("int8 inference needs PyTorch built with oneDNN (the x86 CPU wheels are)")
    model.eval()
    model.decoder.int8 = Int8Hidden(model.decoder, ranges["decoder_act_max"])
    model.precision = "int8"
    return model


def apply_precision(model, meta: dict[str, Any], precision: str):
    """The bundle's model in ``precision``: fp32 as built; int8 from the calibration the bundle records."""
    if check_precision(precision) == "fp32":
        return model
    if bundle_stage(meta) != "parser":
        raise ValueError(f"int8 covers the parser; this is a {meta['stage']!r} bundle")
    if not meta.get("int8"):
        raise ValueError("this bundle was not calibrated for int8: make an int8 bundle with "
                         "`faceparse quantize --bundle B --out DIR` (calibrated on training images)")
    return quantize_model(model, meta["int8"])
