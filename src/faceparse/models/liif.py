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

    # --- per-image state -----------------------------------------------------------------------
    def prepare(self, z: torch.Tensor) -> dict:
        """Everything that depends on the latent grid only, computed once per image (not per query).

        The first imnet layer is linear in its input, so W·[ẑ, g, rel] + b = (W_z ẑ) + (W_g g + b) + W_r rel:
        the ẑ and g terms are projected once per latent cell / image here, and the per-query work is a
        gather plus a 2→hidden product. Numerically the same function as the plain concatenation."""
        b, c, h, w = z.shape
        if self.unfold:
            z = F.unfold(z, 3, padding=1).view(b, c * 9, h, w)
        codes = self.reduce(z.permute(0, 2, 3, 1)).reshape(b, h * w, -1)  # (B, hw, code)
        g = codes.mean(1)                                                  # (B, code)
        first: nn.Linear = self.imnet[0]
        wz, wg, wr = first.weight.split([self.code_dim, self.code_dim, 2], dim=1)
        # W_z ẑ + (W_g g + b): one 'proj' row per latent cell, the image term folded in.
        proj = torch.baddbmm((g @ wg.t() + first.bias).unsqueeze(1), codes, wz.t().expand(b, -1, -1))
        return {"codes": codes, "g": g, "hw": (h, w), "proj": proj, "wr_t": wr.t()}

    def _member(self, state: dict, idx: torch.Tensor, rel: torch.Tensor, factorized: bool) -> torch.Tensor:
        """Prediction from latent cell idx (B, Q) for relative coordinates rel (B, Q, 2), in cell units."""
        if factorized:
            proj = state["proj"]
            x = torch.gather(proj, 1, idx.unsqueeze(-1).expand(-1, -1, proj.shape[-1]))
            x = x.view(-1, x.shape[-1]).addmm_(rel.reshape(-1, 2), state["wr_t"]).relu_()
            return self.imnet[2:](x).view(*idx.shape, -1)
        codes = state["codes"]
        q = torch.gather(codes, 1, idx.unsqueeze(-1).expand(-1, -1, codes.shape[-1]))
        inp = torch.cat([q, state["g"].unsqueeze(1).expand(-1, q.shape[1], -1), rel], dim=-1)
        return self.imnet(inp)

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
        """Logits (B, Q, classes) at coordinates (B, Q, 2), decoded in chunks of query_chunk."""
        outs = [self._query(state, coord[:, i:i + self.query_chunk], factorized)
                for i in range(0, coord.shape[1], self.query_chunk)]
        return torch.cat(outs, dim=1)

    def _query(self, state: dict, coord: torch.Tensor, factorized: bool) -> torch.Tensor:
        if not self.ensemble:
            return self._bilinear(state, coord)
        b, q, _ = coord.shape
        h, w = state["hw"]
        scale = coord.new_tensor([h, w])
        # The 4 members (vx, vy) ∈ {-1, 1}²: the query shifted by half a cell diagonally (+ LIIF's eps),
        # all decoded in one batched MLP call of 4·Q rows.
        signs = coord.new_tensor([[-1, -1], [-1, 1], [1, -1], [1, 1]])
        shifted = (coord.unsqueeze(0) + (signs / scale + 1e-6).view(4, 1, 1, 2)).clamp_(-1 + 1e-6, 1 - 1e-6)
        idx, centre = nearest_cell(shifted, h, w)                 # (4, B, Q), (4, B, Q, 2)
        rel = (coord.unsqueeze(0) - centre) * scale                # from the *unshifted* query, in cells
        pred = self._member(state, idx.permute(1, 0, 2).reshape(b, 4 * q),
                            rel.permute(1, 0, 2, 3).reshape(b, 4 * q, 2), factorized)
        pred = pred.view(b, 4, q, -1).transpose(0, 1)              # (4, B, Q, C)
        return (pred * ensemble_weights(rel).unsqueeze(-1)).sum(0)
