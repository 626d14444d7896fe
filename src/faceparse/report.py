"""Model report: parameter count and MACs per output resolution, counted by torch's FLOP counter
(torch.utils.flop_counter) on meta tensors — no formula, no real compute."""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .models import build_model, count_params

# Sarkar et al. 2023, Table 4 (parameters) and Table 6 (GFLOPs, MAC-counted; 256² input, 19 classes).
PAPER = {"params": 2.29e6, "gmacs": {64: 27.44, 96: 32.25, 128: 39.0, 192: 58.24, 256: 85.2}}
DEFAULT_SIZES = (64, 96, 128, 192, 256, 512)


def count_gmacs(model: torch.nn.Module, out_size: int, in_size: int = 256) -> float:
    """Multiply-accumulates of one forward pass (batch 1), in G. FlopCounterMode counts 2 FLOPs per MAC."""
    x = torch.zeros(1, 3, in_size, in_size, device="meta")
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x, out_size)
    return fc.get_total_flops() / 2 / 1e9


def model_report(model_cfg: dict[str, Any], num_classes: int, sizes=DEFAULT_SIZES, in_size: int = 256) -> dict[str, Any]:
    """{"params", "gmacs": {size: G}, "gmacs_factorized": {...}}.

    ``gmacs`` counts the paper's formulation (the query MLP applied to the concatenated [ẑ, g, rel]),
    which is what Table 6 reports; ``gmacs_factorized`` counts what this implementation actually runs
    (the first layer's ẑ / g terms projected once per latent cell / image) — the same function."""
    with torch.device("meta"):
        model = build_model(model_cfg, num_classes).eval()
    report: dict[str, Any] = {"params": count_params(model), "gmacs": {}, "gmacs_factorized": {}}
    for key, factorized in (("gmacs", False), ("gmacs_factorized", True)):
        model.factorized = factorized
        for s in sizes:
            report[key][str(s)] = round(count_gmacs(model, s, in_size), 3)
    model.factorized = True
    return report


def paper_comparison(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows: what, ours, paper, Δ%."""
    rows = [{"what": "params (M)", "ours": report["params"] / 1e6, "paper": PAPER["params"] / 1e6}]
    for s, g in report["gmacs"].items():
        rows.append({"what": f"GMACs @ {s} out", "ours": g, "paper": PAPER["gmacs"].get(int(s)),
                     "runs": report["gmacs_factorized"][s]})
    for r in rows:
        r["delta_pct"] = None if r["paper"] is None else 100 * (r["ours"] - r["paper"]) / r["paper"]
    return rows
