"""Throughput benchmark in the shape of the paper's Table 6: inference images/s per output resolution
(256² input) and training images/s, with the peak memory of each row.

Each row runs in a fresh process so its peak RSS is its own (ru_maxrss is a high-water mark)."""
from __future__ import annotations

import multiprocessing as mp
import resource
import time
from typing import Any

import torch


def _row(kind: str, preset: str, out: int, batch: int, iters: int, classes: int, threads: int | None,
         sample_queries: int) -> dict[str, Any]:
    from .config import load_params, model_config
    from .losses import EdgeAwareCE
    from .models import build_model, make_coord
    from .runtime import tune_cpu_allocator

    tune_cpu_allocator()  # as the CLI and the TorchServe handler do
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model(model_config(load_params(overrides=[f"model.preset={preset}"])), classes)
    # The encoder switches to channels_last itself (faster on CPU and CUDA).
    x = torch.randn(batch, 3, 256, 256)
    times = []
    if kind == "infer":
        model.eval()
        with torch.inference_mode():
            model(x, out)  # warm-up
            for _ in range(iters):
                t = time.perf_counter()
                model(x, out)
                times.append(time.perf_counter() - t)
    else:
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
    best = min(times)
    return {"kind": kind, "preset": preset, "out": out, "batch": batch, "images_per_s": batch / best,
            "s_per_batch": best, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "threads": torch.get_num_threads()}


def _worker(q, args):
    try:
        q.put(_row(*args))
    except Exception as e:  # report, don't hang the parent
        q.put({"error": f"{type(e).__name__}: {e}", "args": args})


def run_row(*args) -> dict[str, Any]:
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
              on_row=None) -> list[dict[str, Any]]:
    rows = []
    for preset in presets:
        for s in sizes:
            rows.append(run_row("infer", preset, s, batch, iters, classes, threads, 0))
            if on_row:
                on_row(rows[-1])
        rows.append(run_row("train", preset, train_out, batch, iters, classes, threads, sample_queries))
        if on_row:
            on_row(rows[-1])
    return rows
