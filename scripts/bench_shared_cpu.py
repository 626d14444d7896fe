"""Training and inference throughput on a quiet CPU and beside one busy competitor, in one run.

    .venv/bin/python scripts/bench_shared_cpu.py [--configs faceparse,native] [--seconds 8] [--json out.json]

Each (config, workload, condition) runs in a fresh process (OpenMP reads its settings when torch starts):
``faceparse`` = the library's thread settings (faceparse.runtime: the pool sized to the available CPUs and
governed between steps to the cores other processes leave free), ``native``
= libgomp's own defaults, ``passive`` = OMP_WAIT_POLICY=PASSIVE, ``spin:N`` = GOMP_SPINCOUNT=N. Workloads,
the `make run` parser recipe: ``train`` = tiny FP-LIIF training steps (batch 4, 128², 4096 sampled
queries, Adam), ``infer`` = tiny FP-LIIF inference (batch 4, 128 out). ``busy`` starts one pure-Python
busy loop (one core's worth) before the worker. Prints images/s, busy / quiet, and quiet vs the
``native`` quiet figure (the "no loss when quiet" check).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WORKLOADS = ("train", "infer")


def config_env(name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    if name == "native":
        env["FACEPARSE_THREADS"] = "native"          # faceparse leaves OpenMP's defaults alone
    elif name == "passive":
        env.update(FACEPARSE_THREADS="native", OMP_WAIT_POLICY="PASSIVE")
    elif name.startswith("spin:"):
        env.update(FACEPARSE_THREADS="native", GOMP_SPINCOUNT=name.split(":", 1)[1])
    elif name != "faceparse":
        raise SystemExit(f"unknown config {name!r}: faceparse | native | passive | spin:N")
    return env


def worker(workload: str, seconds: float) -> None:
    """Run in the child: time ``workload`` for about ``seconds``; print {"ips": images/s, "threads": n}."""
    import faceparse  # noqa: F401 - applies the thread defaults (unless FACEPARSE_THREADS=native)
    import torch

    from faceparse.config import load_params, model_config
    from faceparse.losses import EdgeAwareCE
    from faceparse.models import build_model, make_coord
    from faceparse.runtime import apply_thread_defaults, tick

    apply_thread_defaults()
    torch.manual_seed(0)
    model = build_model(model_config(load_params()), 19)
    x = torch.randn(4, 3, 128, 128)
    if workload == "train":
        opt, loss = torch.optim.Adam(model.parameters(), 2e-3), EdgeAwareCE(10.0, 0.5, 3)
        coords = make_coord(128, 128, "cpu")[torch.randint(0, 128 * 128, (4, 4096))]
        labels, edges = torch.randint(0, 19, (4, 4096)), torch.rand(4, 4096) > 0.9

        def step():
            out = model.query(model.encode(x), coords)
            opt.zero_grad()
            loss(out.transpose(1, 2), labels, edges).backward()
            opt.step()
    else:
        model.eval()

        def step():
            with torch.inference_mode():
                model(x, 128)
    step()
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        step()
        tick()      # as the training / inference loops do between steps
        n += 1
    print(json.dumps({"ips": 4 * n / (time.perf_counter() - t0), "threads": torch.get_num_threads()}))


def measure(config: str, workload: str, busy: bool, seconds: float) -> dict:
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        time.sleep(0.5 if busy else 0)
        out = subprocess.run([sys.executable, __file__, "--worker", workload, "--seconds", str(seconds)],
                             env=config_env(config), capture_output=True, text=True, timeout=600)
        if out.returncode:
            raise SystemExit(f"worker failed ({config}, {workload}):\n{out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="faceparse,native,passive")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--seconds", type=float, default=8.0, help="timed seconds per row")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.seconds)
    rows = []
    for config in args.configs.split(","):
        for wl in args.workloads.split(","):
            quiet, busy = (measure(config, wl, b, args.seconds) for b in (False, True))
            rows.append({"config": config, "workload": wl, "threads": quiet["threads"], "quiet_ips": quiet["ips"],
                         "busy_ips": busy["ips"], "busy_vs_quiet": busy["ips"] / quiet["ips"]})
            print(f"{config:>12} {wl:>6}  threads {quiet['threads']}  quiet {quiet['ips']:7.2f} img/s  "
                  f"busy {busy['ips']:7.2f} img/s  busy/quiet {rows[-1]['busy_vs_quiet']:5.0%}", flush=True)
    native = {r["workload"]: r["quiet_ips"] for r in rows if r["config"] == "native"}
    for r in rows:
        if r["workload"] in native:
            r["quiet_vs_native"] = r["quiet_ips"] / native[r["workload"]]
    print("\nquiet vs native: " + "  ".join(f"{r['config']}/{r['workload']} {r['quiet_vs_native']:.0%}"
                                            for r in rows if "quiet_vs_native" in r))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
