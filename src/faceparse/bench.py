"""Throughput benchmark in the shape of the paper's Table 6: inference images/s per output resolution
(256² input) and training images/s, with the peak memory of each row.

Each row runs in a fresh process so its peak RSS is its own (ru_maxrss is a high-water mark). With several
precisions (fp32, int8) the inference rows of one output size share a process and their timed batches
alternate, so both see the same machine (this CPU is shared); their peak RSS is then the pair's."""
from __future__ import annotations

import copy
import multiprocessing as mp
import resource
import time
from typing import Any

import torch

from .config import load_params, model_config
from .data.synth import generate_sample
from .losses import EdgeAwareCE
from .models import build_model, make_coord, preprocess
from .models.int8 import calibrate, quantize_model
from .runtime import tune_cpu_allocator


def _calibration_faces(n: int = 4, size: int = 256):
    """Synthetic faces (the training data's kind) for the int8 model's activation ranges."""
    return torch.stack([preprocess(generate_sample(0, i, size).image, size) for i in range(n)])


def _models(preset: str, classes: int, precisions) -> dict[str, torch.nn.Module]:
    """The preset (random weights, seed 0) in each precision; int8 calibrated on synthetic faces."""
    torch.manual_seed(0)
    # model.overrides={}: the preset itself (params.yaml's overrides are the make-run recipe's)
    cfg = model_config(load_params(overrides=[f"model.preset={preset}", "model.overrides={}"]))
    model = build_model(cfg, classes).eval()
    out = {}
    for p in precisions:
        if p == "int8":
            ranges = calibrate(model, [_calibration_faces()], out_size=64)
            out[p] = quantize_model(copy.deepcopy(model), ranges)
        else:
            out[p] = model
    return out


def _infer(models: dict, x: torch.Tensor, out: int, iters: int) -> dict[str, list[float]]:
    """Seconds per batch of each model, the models taking turns batch by batch."""
    times: dict[str, list[float]] = {p: [] for p in models}
    with torch.inference_mode():
        for m in models.values():
            m(x, out)  # warm-up
        for _ in range(iters):
            for p, m in models.items():
                t = time.perf_counter()
                m(x, out)
                times[p].append(time.perf_counter() - t)
    return times


def _row(kind: str, preset: str, out: int, batch: int, iters: int, classes: int, threads: int | None,
         sample_queries: int, precisions=("fp32",)) -> list[dict[str, Any]]:
    tune_cpu_allocator()  # as the CLI and the TorchServe handler do
    if threads:
        torch.set_num_threads(threads)
    models = _models(preset, classes, precisions if kind == "infer" else ("fp32",))
    # The encoder switches to channels_last itself (faster on CPU and CUDA).
    x = torch.randn(batch, 3, 256, 256)
    if kind == "infer":
        return [_result(kind, preset, out, batch, t, p) for p, t in _infer(models, x, out, iters).items()]
    return [_result(kind, preset, out, batch, _train(models["fp32"], x, out, iters, classes, sample_queries), "fp32")]


def _train(model, x: torch.Tensor, out: int, iters: int, classes: int, sample_queries: int) -> list[float]:
    """Seconds per training step (after one warm-up step)."""
    batch = x.shape[0]
    times = []
    model.train()
    loss_fn = EdgeAwareCE()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    labels = torch.randint(0, classes, (batch, out * out))
    edges = torch.rand(batch, out * out) < 0.1
    coord = make_coord(out, out).unsqueeze(0).expand(batch, -1, -1)
    for i in range(iters + 1):
        t = time.perf_counter()
        if sample_queries:
            idx = torch.randint(0, out * out, (batch, sample_queries))
            q = torch.gather(coord, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
            y, e = torch.gather(labels, 1, idx), torch.gather(edges, 1, idx)
        else:
            q, y, e = coord, labels, edges
        logits = model.query(model.encode(x), q).transpose(1, 2)
        loss = loss_fn(logits, y, e)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:  # first step is warm-up
            times.append(time.perf_counter() - t)
    return times


def _result(kind, preset, out, batch, times, precision) -> dict[str, Any]:
    best = min(times)
    return {"kind": kind, "preset": preset, "out": out, "batch": batch, "precision": precision,
            "images_per_s": batch / best, "s_per_batch": best,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "threads": torch.get_num_threads()}


def _worker(q, args):
    try:
        q.put(_row(*args))
    except Exception as e:  # report, don't hang the parent
        q.put({"error": f"{type(e).__name__}: {e}", "args": args})


def run_row(*args) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_worker, args=(q, args))
    p.start()
    res = q.get()
    p.join()
    if "error" in res:
        raise RuntimeError(f"benchmark row {args} failed: {res['error']}")
    return res


def benchmark(presets=("tiny", "paper"), sizes=(64, 96, 128, 192, 256, 512), batch: int = 4, iters: int = 2,
              classes: int = 19, threads: int | None = None, train_out: int = 256, sample_queries: int = 4096,
              on_row=None, precisions=("fp32",), train: bool = True) -> list[dict[str, Any]]:
    """Inference rows per preset × output size × precision (the precisions interleaved in one process), then a
    training row per preset (fp32) unless ``train`` is off."""
    jobs = [("infer", preset, s, batch, iters, classes, threads, 0, tuple(precisions))
            for preset in presets for s in sizes]
    if train:
        jobs += [("train", preset, train_out, batch, iters, classes, threads, sample_queries) for preset in presets]
    jobs.sort(key=lambda j: list(presets).index(j[1]))  # each preset's inference rows, then its training row
    rows = []
    for job in jobs:
        for r in run_row(*job):
            rows.append(r)
            if on_row:
                on_row(r)
    return rows
