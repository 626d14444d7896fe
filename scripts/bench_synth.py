"""Benchmark the synthetic face generator: images/s in one process (target: >= 30 images/s at 256²).

    .venv/bin/python scripts/bench_synth.py [--n 200] [--size 256] [--seed 0] [--occlusion-prob 0.3]
"""
from __future__ import annotations

import argparse
import time

from faceparse.data.synth import generate_sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--occlusion-prob", type=float, default=0.3)
    args = ap.parse_args()
    try:  # one process, one core: keep OpenCV's own thread pool out of the measurement
        import cv2
        cv2.setNumThreads(1)
    except Exception:  # pragma: no cover
        pass
    generate_sample(args.seed, 10**6, args.size, args.occlusion_prob)  # warm-up (imports, caches)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(args.n):
        generate_sample(args.seed, i, args.size, args.occlusion_prob)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{args.n} images at {args.size}x{args.size} in {dt:.2f} s: {args.n / dt:.1f} images/s "
          f"({1000 * dt / args.n:.1f} ms/image, one process); CPU time {cpu:.2f} s → {args.n / cpu:.1f} images/s "
          f"per busy core")


if __name__ == "__main__":
    main()
