#!/usr/bin/env python
"""Bounded load test of the local TorchServe endpoint (and the canary router in front of it) against the
same handler called in-process.

    .venv/bin/python scripts/load_test.py [--model BUNDLE|models:/...|--preset] [--requests 1000]
        [--concurrency 1,4,16] [--targets torchserve,router] [--resolution 256] [--image PHOTO]
        [--set serve.batch_size=4 --set serve.max_batch_delay_ms=50] [--kill-worker] [--json OUT]

Starts its own TorchServe (free loopback ports, a temporary run dir; token auth on as always; with
``--targets ...router`` also the canary router, pass-through), then for each concurrency level sends
``--requests`` POSTs of one real photo with that many in flight (aiohttp, loopback only) to each target,
and runs the *same handler code* in-process over the same number of images in batches of
min(concurrency, ``serve.batch_size``) (decode → preprocess → model → argmax → PNG) — targets and in-process
alternate in ``--rounds`` rounds so drifting background load on a shared machine hits them alike. Prints, per
level and endpoint, p50 / p99 latency, throughput and the ratio to in-process (targets: TorchServe ≥ 0.8,
router ≥ 0.75). ``--kill-worker``: a second run during which the worker process is SIGKILLed once; TorchServe
restarts it; prints how many requests failed and how long the endpoint took to answer again. Without
--model, a random width-8 bundle (the tests' model: the least compute per request, so the fixed serving
overhead weighs most); ``--preset``: a random bundle of the params' model preset (``--set model.preset=paper``).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def pct(values, q):
    from faceparse.serve.router import percentile

    return percentile(values, q)


async def _load(url: str, key_file: Path, body: bytes, n: int, concurrency: int, resolution: int,
                on_progress=None) -> dict:
    import aiohttp

    lat, codes, errors = [], {}, []
    done = 0
    t_first_fail = t_recover = None
    queue = iter(range(n))
    lock = asyncio.Lock()

    def headers():
        key = json.loads(key_file.read_text())["inference"]["key"]
        return {"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg", "X-Resolution": str(resolution)}

    hdr = headers()

    async def worker(session):
        nonlocal done, t_first_fail, t_recover
        while True:
            async with lock:
                i = next(queue, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=hdr) as r:
                    await r.read()
                    status = r.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                status, _ = -1, errors.append(type(e).__name__)
            t1 = time.perf_counter()
            codes[status] = codes.get(status, 0) + 1
            if status == 200:
                lat.append((t1 - t0) * 1000)
                if t_first_fail is not None and t_recover is None:
                    t_recover = t1
            elif t_first_fail is None:
                t_first_fail = t1
            done += 1
            if on_progress:
                on_progress(done)

    conn = aiohttp.TCPConnector(limit=concurrency)
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=300),
                                     trust_env=False) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    ok = codes.get(200, 0)
    return {"requests": n, "concurrency": concurrency, "ok": ok, "failed": n - ok, "codes": codes,
            "wall_s": round(wall, 2), "throughput_rps": round(ok / wall, 2),
            "p50_ms": round(pct(lat, 0.5), 1) if lat else None, "p99_ms": round(pct(lat, 0.99), 1) if lat else None,
            "recovery_s": round(t_recover - t_first_fail, 2) if (t_first_fail and t_recover) else None,
            "client_errors": sorted(set(errors)), "_lat": lat}


class InProcess:
    """The handler itself, no server: same decode / preprocess / model / encode, in batches of ``batch``."""

    def __init__(self, bundle: Path, body: bytes, batch: int, resolution: int):
        import importlib.util

        from ts.context import Context, RequestProcessor

        from faceparse.serve.package import HANDLER

        spec = importlib.util.spec_from_file_location("fp_handler_bench", HANDLER)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        self.h = mod.FaceParseHandler()
        self.ctx = Context("bench", str(bundle), {"model": {"modelVersion": "1"}}, batch, None, "0.12.0")
        self.h.initialize(self.ctx)
        self.batch = batch
        self.rows = [{"body": bytearray(body)} for _ in range(batch)]
        self.ctx.request_processor = [RequestProcessor({"X-Resolution": str(resolution)}) for _ in range(batch)]
        for _ in range(3):
            self.h.handle(self.rows, self.ctx)
        self.reset()

    def reset(self) -> None:
        self.lat: list[float] = []
        self.images, self.wall = 0, 0.0

    def run(self, n: int) -> None:
        t0 = time.perf_counter()
        done = 0
        while done < n:
            k = min(self.batch, n - done)
            t = time.perf_counter()
            out = self.h.handle(self.rows[:k], self.ctx)
            self.lat.append((time.perf_counter() - t) * 1000)
            assert all(isinstance(o, (bytes, bytearray)) for o in out)
            done += k
        self.wall += time.perf_counter() - t0
        self.images += n

    def summary(self) -> dict:
        return {"images": self.images, "batch_size": self.batch, "wall_s": round(self.wall, 2),
                "throughput_ips": round(self.images / self.wall, 2),
                "batch_p50_ms": round(pct(self.lat, 0.5), 1), "batch_p99_ms": round(pct(self.lat, 0.99), 1)}


def merge(parts: list[dict], lat: list[float]) -> dict:
    n = sum(p["requests"] for p in parts)
    ok = sum(p["ok"] for p in parts)
    wall = sum(p["wall_s"] for p in parts)
    codes: dict = {}
    for p in parts:
        for c, k in p["codes"].items():
            codes[c] = codes.get(c, 0) + k
    return {"requests": n, "concurrency": parts[0]["concurrency"], "ok": ok, "failed": n - ok, "codes": codes,
            "wall_s": round(wall, 2), "throughput_rps": round(ok / wall, 2),
            "p50_ms": round(pct(lat, 0.5), 1) if lat else None, "p99_ms": round(pct(lat, 0.99), 1) if lat else None,
            "rounds": [p["throughput_rps"] for p in parts]}


def _ints(text: str) -> list[int]:
    return [int(x) for x in str(text).split(",") if x.strip()]


def measure(urls: dict[str, str], key_file: Path, body: bytes, local: InProcess, a, concurrency: int) -> dict:
    """One concurrency level: interleaved rounds (each target in turn, then in-process) so drifting background
    load on a shared machine hits all alike; each endpoint is idle while another is measured."""
    parts = {t: [] for t in urls}
    lat = {t: [] for t in urls}
    per = [a.requests // a.rounds + (1 if i < a.requests % a.rounds else 0) for i in range(a.rounds)]
    for i, n in enumerate(per):
        for t, url in urls.items():
            r = asyncio.run(_load(url, key_file, body, n, concurrency, a.resolution))
            lat[t] += r.pop("_lat")
            parts[t].append(r)
        local.run(n)
        print(f"  c={concurrency} round {i + 1}/{a.rounds}: " + ", ".join(
            f"{t} {parts[t][-1]['throughput_rps']} req/s ({parts[t][-1]['failed']} failed)" for t in urls)
              + f", in-process {local.summary()['throughput_ips']} img/s so far", flush=True)
    res = {t: merge(parts[t], lat[t]) for t in urls}
    res["in_process"] = local.summary()
    for t in urls:
        res[t]["ratio"] = round(res[t]["throughput_rps"] / res["in_process"]["throughput_ips"], 3)
    return res


def print_table(rows: dict[int, dict], targets: list[str], batch: int) -> None:
    print(f"\n{'concurrency':>11} {'endpoint':<12}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>9}{'ratio':>8}  failed")
    for c, res in rows.items():
        ip = res["in_process"]
        for t in targets:
            r = res[t]
            print(f"{c:>11} {t:<12}{r['p50_ms']:>10}{r['p99_ms']:>10}{r['throughput_rps']:>9}{r['ratio']:>8}  "
                  f"{r['failed']}/{r['requests']}")
        print(f"{c:>11} {'in-process':<12}{ip['batch_p50_ms']:>10}{ip['batch_p99_ms']:>10}{ip['throughput_ips']:>9}"
              f"{'':>8}  (batches of {ip['batch_size']})")
    print(f"ratio = endpoint req/s ÷ the same handler in-process (batches of min(concurrency, {batch})); "
          "targets: TorchServe ≥ 0.8, router ≥ 0.75")


def kill_worker_run(url: str, key_file: Path, body: bytes, run_dir: Path, a, concurrency: int) -> dict:
    from faceparse.serve import server

    n2 = max(200, a.requests // 2)
    killed: list[int] = []

    def progress(done):
        if done == n2 // 4 and not killed:
            killed.extend(server.kill_worker(run_dir))

    res = asyncio.run(_load(url, key_file, body, n2, concurrency, a.resolution, progress))
    res.pop("_lat")
    res["killed_pids"] = killed
    print(f"worker kill: {json.dumps(res)}", flush=True)
    print(f"worker SIGKILL mid-load: {res['failed']}/{res['requests']} requests failed {res['codes']}, "
          f"answering again after {res['recovery_s']} s")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="bundle dir or models:/ URI (default: a random width-8 test bundle)")
    ap.add_argument("--preset", action="store_true", help="a random bundle of the params' model preset instead")
    ap.add_argument("--requests", type=int, default=1000, help="requests per concurrency level and endpoint")
    ap.add_argument("--concurrency", default="16", help="in-flight requests; a list runs each level in turn: 1,4,16")
    ap.add_argument("--resolution", type=int, default=64, help="output size (64: least work per request)")
    ap.add_argument("--image", default=str(REPO.parent / "shared" / "fixtures" / "celebamask-hq-samples" / "0.jpg"))
    ap.add_argument("--rounds", type=int, default=4, help="alternate endpoints / in-process this many times")
    ap.add_argument("--kill-worker", action="store_true", help="also: SIGKILL the worker once during a second run")
    ap.add_argument("--targets", default="torchserve", help="torchserve, router or torchserve,router (the canary "
                                                            "router in front of TorchServe, pass-through)")
    ap.add_argument("--via-router", action="store_true", help="same as --targets router")
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--set", action="append", default=[], help="params override, e.g. serve.batch_size=1")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()
    try:
        levels = _ints(a.concurrency)
    except ValueError:
        ap.error(f"--concurrency: whole numbers separated by commas, not {a.concurrency!r}")
    targets = ["router"] if a.via_router else [t.strip() for t in a.targets.split(",") if t.strip()]
    if not (1 <= a.requests <= 20000 and levels and all(1 <= c <= 64 for c in levels)):
        ap.error("--requests must be 1..20000 and --concurrency 1..64 (bounded load)")
    if not targets or set(targets) - {"torchserve", "router"}:
        ap.error(f"--targets: torchserve and/or router, not {a.targets!r}")

    from faceparse.config import load_params, model_config
    from faceparse.serve import server
    from faceparse.serve.testing import port_overrides, tiny_bundle

    params = load_params(a.params, port_overrides() + a.set)
    body = Path(a.image).read_bytes()
    tmp = Path(tempfile.mkdtemp(prefix="faceparse-load-"))
    if a.model:
        from faceparse.serve.package import resolve_model

        bundle, _ = resolve_model(a.model, params)
    elif a.preset:
        cfg = model_config(params)
        bundle = tiny_bundle(tmp / "bundle", seed=0, cfg={k: v for k, v in cfg.items() if k != "preset"})
    else:
        bundle = tiny_bundle(tmp / "bundle", seed=0)  # the tests' width-8 model: the least work per request
    batch = int(params["serve"]["batch_size"])
    out = {"model": str(a.model or (f"random {model_config(params)['preset']} preset" if a.preset else
                                    "random width-8 test bundle (faceparse.serve.testing.TINY)")), "resolution": a.resolution,
           "image": a.image, "cpu_count": os.cpu_count(), "serve": {k: params["serve"][k] for k in
                                                                  ("batch_size", "max_batch_delay_ms", "workers")}}
    t0 = time.perf_counter()
    st = server.start(params, model=str(bundle), run_dir=tmp / "run", model_store=tmp / "store",
                      router="router" in targets)
    out["start_s"] = round(time.perf_counter() - t0, 1)
    rows: dict[int, dict] = {}
    try:
        name = st["model_name"]
        urls = {t: f"{st['endpoint_url'] if t == 'router' else st['inference_url']}/predictions/{name}"
                for t in targets}
        key_file = Path(st["key_file"])
        warm = min(4, max(levels))
        for url in urls.values():   # warm-up: the worker's first batches (allocator, oneDNN primitives)
            asyncio.run(_load(url, key_file, body, 2 * warm, warm, a.resolution))
        locals_: dict[int, InProcess] = {}
        for c in levels:
            b = min(c, batch)
            local = locals_.get(b) or InProcess(Path(bundle), body, b, a.resolution)
            locals_[b] = local
            local.reset()
            rows[c] = measure(urls, key_file, body, local, a, c)
        if a.kill_worker:
            out["worker_kill"] = kill_worker_run(next(iter(urls.values())), key_file, body, tmp / "run", a,
                                                 max(levels))
    finally:
        server.stop(tmp / "run")
    out["levels"] = {str(c): r for c, r in rows.items()}
    print_table(rows, targets, batch)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(out, indent=2))
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
