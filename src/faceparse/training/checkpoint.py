"""Training checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint holds only tensors and plain Python values (numpy's RNG state is converted to lists), so it
loads with ``torch.load(weights_only=True)`` — no pickled code. It also carries the bundle meta
(model_config, num_classes, label_table, input_size, stage), so a checkpoint ``.pt`` can be turned into
a model on its own (``faceparse.registry.resolve_bundle`` accepts one).
"""
from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

LAST = "last.pt"
EPOCH_RE = re.compile(r"^epoch_(\d{3,})\.pt$")


def epoch_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.pt"


def rng_state(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "python": _py_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def _py_state_to_plain(st):
    version, internal, gauss = st
    return [int(version), list(internal), gauss]


def set_rng_state(state: dict[str, Any], loader_generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader_generator is not None and "loader" in state:
        loader_generator.set_state(state["loader"])


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temp file in the same directory, fsync, then os.replace: a reader (or a crash)
    never sees a half-written checkpoint."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def _link_or_copy(src: Path, dst: Path) -> None:
    """dst := src atomically, sharing the bytes (hard link) where the filesystem allows."""
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def save_checkpoint(run_dir: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``epoch_XXX.pt`` for ``state['epoch']`` and point ``last.pt`` at the same bytes."""
    d = Path(run_dir)
    ep = d / epoch_name(int(state["epoch"]))
    atomic_save(state, ep)
    _link_or_copy(ep, d / LAST)
    return ep


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint to resume from: {p.resolve()} (train once without --resume)")
    try:
        ck = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a truncated / foreign file: say which
        raise ValueError(f"{p}: not a readable faceparse checkpoint ({type(e).__name__}: {e})") from None
    for key in ("model", "optimizers", "schedulers", "epoch", "meta"):
        if key not in ck:
            raise ValueError(f"{p}: not a faceparse training checkpoint (missing {key!r})")
    return ck


def clear_run_dir(run_dir: str | os.PathLike) -> None:
    """Remove the checkpoints of a previous run (fresh start): last.pt and epoch_*.pt only."""
    d = Path(run_dir)
    if not d.is_dir():
        return
    for f in d.iterdir():
        if f.name == LAST or EPOCH_RE.match(f.name):
            f.unlink()
