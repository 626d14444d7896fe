"""Process-group setup shared by 1-process and torchrun runs: the same code path for any world size.

Launched by ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK in the environment) a process group is
initialised — gloo on CPU, nccl on CUDA; a plain ``python`` / ``faceparse train`` run is rank 0 of 1
without a process group, and the collective helpers below become no-ops.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    initialised_here: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def pick_device(requested: str | None, local_rank: int) -> torch.device:
    req = (requested or "auto").lower()
    if req == "auto":
        req = "cuda" if torch.cuda.is_available() else "cpu"
    if req.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("train.device=cuda but no CUDA device is available")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if req != "cpu":
        raise ValueError(f"train.device must be auto | cpu | cuda, got {requested!r}")
    return torch.device("cpu")


def setup(device: str | None = "auto") -> Dist:
    if not launched_by_torchrun():
        return Dist(0, 1, 0, pick_device(device, 0), False)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    here = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                device_id=dev if dev.type == "cuda" else None)
        here = True
    return Dist(rank, world, local_rank, dev, here)


def teardown(d: Dist) -> None:
    if d.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum over ranks (in place on a copy on the collective's device); identity without a group."""
    if not d.active or d.world_size == 1:
        return t
    x = t.to(d.device).clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x.to(t.device)


def barrier(d: Dist) -> None:
    if d.active and d.world_size > 1:
        dist.barrier()


def broadcast_object(obj, d: Dist, src: int = 0):
    if not d.active or d.world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
