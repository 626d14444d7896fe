"""The FP-LIIF decoder: a local implicit image function over the encoder's latent grid.

Mechanics follow yinboc/liif models/liif.py (feature unfolding, 4-member local ensemble, area weights),
with the paper's changes: a reduce-channel MLP after the unfolding and a global code g in every query.

Coordinates are LIIF's: (row, col) in [-1, 1], pixel centres of an H×W grid at -1 + (2i + 1)/H.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def make_coord(h: int, w: int, device=None) -> torch.Tensor:
    """(h*w, 2) pixel-centre coordinates, (row, col), in [-1, 1]."""
    ys = -1 + (2 * torch.arange(h, device=device, dtype=torch.float32) + 1) / h
    xs = -1 + (2 * torch.arange(w, device=device, dtype=torch.float32) + 1) / w
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).view(-1, 2)


def mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def nearest_cell(coord: torch.Tensor, h: int, w: int):
    """Index (row, col) of the latent cell containing each coordinate, and that cell's centre."""
    r = ((coord[..., 0] + 1) * (h / 2)).floor().clamp_(0, h - 1)
    c = ((coord[..., 1] + 1) * (w / 2)).floor().clamp_(0, w - 1)
    centre = torch.stack([-1 + (2 * r + 1) / h, -1 + (2 * c + 1) / w], dim=-1)
    return (r * w + c).long(), centre


def ensemble_weights(rels) -> torch.Tensor:
    """LIIF's local-ensemble weights: each of the 4 members is weighted by the area of the rectangle
    between the query and the *diagonally opposite* member's cell centre.

    rels: the 4 members' relative coordinates, stacked on dim 0 (4, ..., 2) or a list of 4.
    Returns (4, ...) summing to 1 over dim 0."""
    rels = torch.stack(list(rels)) if isinstance(rels, (list, tuple)) else rels
    areas = (rels[..., 0] * rels[..., 1]).abs() + 1e-9
    areas = areas.flip(0)  # swap diagonals: member k takes the area of member 3-k
    return areas / areas.sum(0, keepdim=True)


class LIIFDecoder(nn.Module):
    """Ẑ = reduce(unfold3x3(Z)); g = mean(Ẑ); logits(q) = Σ_k w_k · MLP([ẑ_k, g, rel_k])."""

    CPU_TILE = 512  # queries per MLP call on CPU (2048 rows × 256 stay in L2; measured best of 128…4096)

    def __init__(self, in_ch: int, num_classes: int, reduce=(256, 64), hidden=(256, 256, 256, 256),
                 unfold: bool = True, ensemble: bool = True, query_chunk: int = 16384):
        super().__init__()
        self.unfold = unfold
        self.ensemble = ensemble
        self.query_chunk = int(query_chunk)
        self.reduce = mlp([in_ch * (9 if unfold else 1), *reduce])
        self.code_dim = reduce[-1] if reduce else in_ch * (9 if unfold else 1)
        # The query MLP, input [ẑ, g, rel] = 2·code + 2 (130 for the paper).
        self.imnet = mlp([2 * self.code_dim + 2, *hidden, num_classes])
        self.int8 = None  # int8 hidden layers for CPU inference, once quantised (faceparse.models.int8)

    # --- per-image state -----------------------------------------------------------------------
    def prepare(self, z: torch.Tensor) -> dict:
        """Everything that depends on the latent grid only, computed once per image (not per query).

        The first imnet layer is linear in its input, so W·[ẑ, g, rel] + b = (W_z ẑ) + (W_g g + b) + W_r rel:
        the ẑ and g terms are projected once per latent cell / image here, and the per-query work is a
        gather plus a 2→hidden product. Numerically the same function as the plain concatenation."""
        b, c, h, w = z.shape
        if self.unfold and len(self.reduce):
            # unfold3x3 then Linear(9c → r) is a 3×3 conv with the Linear's weight viewed as (r, c, 3, 3)
            # (F.unfold orders its 9c channels channel-major, as a conv weight is): one conv instead of an
            # im2col copy, a permute copy and a GEMM. Channels_last output makes the permute free.
            first_reduce: nn.Linear = self.reduce[0]
            x = F.conv2d(z, first_reduce.weight.view(-1, c, 3, 3), first_reduce.bias, padding=1)
            codes = self.reduce[1:](x.permute(0, 2, 3, 1))
        else:
            if self.unfold:
                z = F.unfold(z, 3, padding=1).view(b, c * 9, h, w)
            codes = self.reduce(z.permute(0, 2, 3, 1))
        codes = codes.reshape(b, h * w, -1)                                # (B, hw, code)
        g = codes.mean(1)                                                  # (B, code)
        first: nn.Linear = self.imnet[0]
        wz, wg, wr = first.weight.split([self.code_dim, self.code_dim, 2], dim=1)
        # W_z ẑ + (W_g g + b): one 'proj' row per latent cell, the image term folded in.
        proj = torch.baddbmm((g @ wg.t() + first.bias).unsqueeze(1), codes, wz.t().expand(b, -1, -1))
        return {"codes": codes, "g": g, "hw": (h, w), "proj": proj, "wr_t": wr.t()}

    def _bilinear(self, state: dict, coord: torch.Tensor) -> torch.Tensor:
        """Ensemble off (ablation): one query, the code bilinearly interpolated at the coordinate."""
        h, w = state["hw"]
        grid = state["codes"].transpose(1, 2).reshape(coord.shape[0], -1, h, w)
        q = F.grid_sample(grid, coord.flip(-1).unsqueeze(1), mode="bilinear", padding_mode="border",
                          align_corners=False)[:, :, 0].transpose(1, 2)
        _, centre = nearest_cell(coord, h, w)
        rel = (coord - centre) * coord.new_tensor([h, w])
        inp = torch.cat([q, state["g"].unsqueeze(1).expand(-1, q.shape[1], -1), rel], dim=-1)
        return self.imnet(inp)

    def query(self, state: dict, coord: torch.Tensor, factorized: bool = True) -> torch.Tensor:
        """Logits (B, Q, classes) at coordinates (B, Q, 2), decoded in chunks of query_chunk per image
        (bounds memory at large outputs; a fixed count, so an exported graph has a fixed chunk count)."""
        outs = [self._query(state, coord[:, i:i + self.query_chunk], factorized)
                for i in range(0, coord.shape[1], self.query_chunk)]
        return torch.cat(outs, dim=1)

    def _query(self, state: dict, coord: torch.Tensor, factorized: bool) -> torch.Tensor:
        if not self.ensemble:
            return self._bilinear(state, coord)
        b, q, _ = coord.shape
        idx, rel, wts = ensemble_geometry(coord, *state["hw"])
        decode = self._decode if factorized else self._decode_reference
        if coord.device.type != "cpu" or torch.compiler.is_compiling():
            return decode(state, idx, rel, wts).view(b, q, -1)
        # CPU: tiles of CPU_TILE queries keep each layer's activations in cache (decoder ~1.6× faster
        # than one large GEMM per layer on 2 cores).
        if factorized and not torch.is_grad_enabled():
            decode = self._decode_cpu_inference if self.int8 is None else self.int8.decode
            return decode(state, idx, rel, wts).view(b, q, -1)
        n, t = b * q, self.CPU_TILE
        outs = [decode(state, idx[4 * s:4 * (s + t)], rel[4 * s:4 * (s + t)], wts[s:s + t]) for s in range(0, n, t)]
        return torch.cat(outs).view(b, q, -1)

    def _decode_cpu_inference(self, state: dict, idx: torch.Tensor, rel: torch.Tensor,
                              wts: torch.Tensor) -> torch.Tensor:
        """_decode, tile by tile, without autograd: each activation carries a trailing column of ones and
        each weight its bias as an extra row, so a layer is one GEMM written into a reused buffer plus an
        in-place ReLU (no bias broadcast copy, no allocation per tile; bitwise equal to _decode here)."""
        proj, weights = self._inference_tables(state)
        t = self.CPU_TILE
        bufs = [proj.new_ones(4 * t, w.shape[1] + 1) for w in weights]
        outs = []
        for s in range(0, wts.shape[0], t):
            e = min(s + t, wts.shape[0])
            x = proj.index_select(0, idx[4 * s:4 * e])
            x[:, :-1].addmm_(rel[4 * s:4 * e], state["wr_t"])
            x.relu_()  # relu(1) = 1: the ones column survives
            for w, buf in zip(weights, bufs):
                out = buf[:4 * (e - s)]
                torch.mm(x, w, out=out[:, :-1])
                x = out.relu_()
            outs.append(self._blend_and_classify(x[:, :-1], wts[s:e]))
        return torch.cat(outs)

    def _inference_tables(self, state: dict):
        """proj with a ones column, and each hidden layer as [Wᵀ; b]: built once per prepared state, not
        once per query chunk (evaluation queries one state at several output sizes)."""
        if "proj_ones" not in state:
            proj = state["proj"].reshape(-1, state["proj"].shape[-1])
            state["proj_ones"] = torch.cat([proj, proj.new_ones(proj.shape[0], 1)], 1)
            state["hidden_wb"] = [torch.cat([lin.weight.t(), lin.bias.unsqueeze(0)])
                                  for lin in self.imnet[2:-1:2]]
        return state["proj_ones"], state["hidden_wb"]

    def _blend_and_classify(self, hidden: torch.Tensor, wts: torch.Tensor) -> torch.Tensor:
        """Σ_k w_k h_k over each query's 4 member rows, then the last (affine) layer — see _decode."""
        blended = torch.bmm(wts.unsqueeze(1), hidden.view(wts.shape[0], 4, -1)).squeeze(1)
        return self.imnet[-1](blended)

    def _decode(self, state: dict, idx: torch.Tensor, rel: torch.Tensor, wts: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) for N queries, each from its 4 members' rows idx (4N,), rel (4N, 2).

        The first layer is the per-cell projection plus W_r·rel (see prepare). The ensemble blend is moved
        before the last layer: that layer is affine and the weights sum to 1, so
        Σ w_k (W h_k + b) = W (Σ w_k h_k) + b — one last-layer product per query instead of four."""
        proj = state["proj"].reshape(-1, state["proj"].shape[-1])
        x = proj.index_select(0, idx).addmm_(rel, state["wr_t"]).relu_()
        x = self.imnet[2:-1](x)                                      # remaining hidden layers (+ ReLU)
        return self._blend_and_classify(x, wts)

    def _decode_reference(self, state: dict, idx: torch.Tensor, rel: torch.Tensor,
                          wts: torch.Tensor) -> torch.Tensor:
        """The paper's formulation, term for term: MLP([ẑ, g, rel]) per member, logits blended. Used to
        count the paper's MACs and to check _decode against."""
        codes = state["codes"].reshape(-1, state["codes"].shape[-1])
        h, w = state["hw"]
        inp = torch.cat([codes.index_select(0, idx), state["g"].index_select(0, idx // (h * w)), rel], dim=-1)
        pred = self.imnet(inp).view(wts.shape[0], 4, -1)
        return (pred * wts.unsqueeze(-1)).sum(1)


def ensemble_geometry(coord: torch.Tensor, h: int, w: int):
    """LIIF's 4-member local ensemble for queries coord (B, Q, 2) on an h×w latent grid.

    Members (vx, vy) ∈ {-1, 1}²: the query shifted by half a cell diagonally (+ LIIF's eps) picks the
    cell; the relative coordinate is from the *unshifted* query, in cell units. Returns, member-minor
    (query i's members at rows 4i…4i+3): flat cell rows idx (B·Q·4,) into a (B·h·w, ·) table, rel
    (B·Q·4, 2), and the blend weights (B·Q, 4)."""
    b, q, _ = coord.shape
    scale = coord.new_tensor([h, w])
    signs = coord.new_tensor([[-1, -1], [-1, 1], [1, -1], [1, 1]])
    shifted = (coord.unsqueeze(2) + (signs / scale + 1e-6)).clamp_(-1 + 1e-6, 1 - 1e-6)  # (B, Q, 4, 2)
    idx, centre = nearest_cell(shifted, h, w)                                         # (B, Q, 4)
    rel = (coord.unsqueeze(2) - centre) * scale
    wts = ensemble_weights(rel.movedim(2, 0)).movedim(0, -1)
    idx = idx + (torch.arange(b, device=coord.device) * (h * w)).view(b, 1, 1)
    return idx.reshape(-1), rel.reshape(-1, 2), wts.reshape(-1, 4)
