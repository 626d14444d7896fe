#!/usr/bin/env python
"""Prints the paper's Table 6 shape: inference images/s at 64…512 output (256² input) and training
images/s, for the tiny and paper presets, with peak RSS per row.

    .venv/bin/python scripts/bench_model.py [--presets paper] [--sizes 64,256,512] [--batch 4] [--json out.json]

Targets on 2 CPU cores, fp32 (issue: training & evaluation): paper, batch 4, 256 out ≥ 0.85 img/s;
64-out rate ≥ 3.0× the 256-out rate; peak RSS ≤ 3 GB at 512 out, batch 4."""
import argparse
import json
import platform

import torch

from faceparse.bench import benchmark


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default="tiny,paper")
    ap.add_argument("--sizes", default="64,96,128,192,256,512")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=2, help="timed iterations per row (best is reported)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the rows here")
    a = ap.parse_args()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, fp32, batch {a.batch}, 256² input")
    print(f"{'preset':<7} {'kind':<6} {'out':>5} {'img/s':>8} {'s/batch':>8} {'peak RSS GB':>12}")

    def show(r):
        print(f"{r['preset']:<7} {r['kind']:<6} {r['out']:>5} {r['images_per_s']:>8.3f} {r['s_per_batch']:>8.2f} "
              f"{r['peak_rss_gb']:>12.2f}", flush=True)

    rows = benchmark(a.presets.split(","), [int(s) for s in a.sizes.split(",")], a.batch, a.iters,
                     threads=a.threads, on_row=show)
    for preset in a.presets.split(","):
        inf = {r["out"]: r["images_per_s"] for r in rows if r["preset"] == preset and r["kind"] == "infer"}
        if 64 in inf and 256 in inf:
            print(f"{preset}: 64-out / 256-out rate = {inf[64] / inf[256]:.2f}× (MAC ratio 3.15×, paper A100 4.0×)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
