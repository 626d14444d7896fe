#!/usr/bin/env python
"""Prints the paper's Table 6 shape: inference images/s at 64…512 output (256² input) and training
images/s, for the tiny and paper presets, with peak RSS per row.

    .venv/bin/python scripts/bench_model.py [--presets paper] [--sizes 64,256,512] [--batch 4] [--json out.json]
                                            [--precision fp32,int8] [--no-train]

Targets on 2 CPU cores, fp32 (issue: training & evaluation): paper, batch 4, 256 out ≥ 0.85 img/s;
64-out rate ≥ 3.0× the 256-out rate; peak RSS ≤ 3 GB at 512 out, batch 4.
--precision fp32,int8 (issue #17): both precisions per inference row, their batches alternating in one process
(int8 calibrated on synthetic faces, faceparse.models.int8); prints int8 / fp32 per output size."""
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
    ap.add_argument("--precision", default="fp32", help="fp32 | int8 | fp32,int8 (inference rows)")
    ap.add_argument("--no-train", action="store_true", help="inference rows only")
    a = ap.parse_args()
    precisions = a.precision.split(",")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{a.threads or torch.get_num_threads()} threads, {'/'.join(precisions)}, batch {a.batch}, 256² input")
    print(f"{'preset':<7} {'kind':<6} {'prec':<5} {'out':>5} {'img/s':>8} {'s/batch':>8} {'peak RSS GB':>12}")

    def show(r):
        print(f"{r['preset']:<7} {r['kind']:<6} {r['precision']:<5} {r['out']:>5} {r['images_per_s']:>8.3f} "
              f"{r['s_per_batch']:>8.2f} {r['peak_rss_gb']:>12.2f}", flush=True)

    rows = benchmark(a.presets.split(","), [int(s) for s in a.sizes.split(",")], a.batch, a.iters,
                     threads=a.threads, on_row=show, precisions=precisions, train=not a.no_train)
    for preset in a.presets.split(","):
        rate = {(r["precision"], r["out"]): r["images_per_s"] for r in rows
                if r["preset"] == preset and r["kind"] == "infer"}
        for p in precisions:
            if (p, 64) in rate and (p, 256) in rate:
                print(f"{preset} {p}: 64-out / 256-out rate = {rate[p, 64] / rate[p, 256]:.2f}× "
                      f"(MAC ratio 3.15×, paper A100 4.0×)")
        for out in sorted({o for _, o in rate}):
            if ("fp32", out) in rate and ("int8", out) in rate:
                print(f"{preset} {out} out: int8 / fp32 = {rate['int8', out] / rate['fp32', out]:.2f}× "
                      f"(same process, batches alternating)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
