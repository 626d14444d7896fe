"""Benchmark the whole chain on photos (issue #32): detection → parser → landmarks → completion → FISN → 3D
mesh (fitted), in process and from the command line.

    python scripts/bench_chain.py [PHOTOS ...] [--threads 2] [--repeat 3] [--cli] [-m recon3d=artifacts/recon3d/model]

In process: the chain is loaded once (its load time printed), warmed up on the first photo, then each photo
runs ``--repeat`` times; per photo the median seconds of each stage and of the whole call, then the mean over
photos and each stage's share. ``--cli``: the wall time of ``faceparse chain PHOTO -o TMP`` per photo (a fresh
process: importing torch and loading the models included). Targets: ≤ 2 s per photo in process, ≤ 6 s from the
command line (2 threads). Default photos: the CelebAMask-HQ fixtures in ../shared/fixtures.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "celebamask-hq-samples"


def _photos(given: list[str]) -> list[str]:
    if given:
        return given
    found = sorted(str(p) for p in FIXTURES.glob("*.jpg"))
    if not found:
        raise SystemExit(f"no photos given and none in {FIXTURES}")
    return found


def in_process(photos: list[str], repeat: int, models: dict[str, str]) -> None:
    t0 = time.perf_counter()
    from faceparse.chain import load_chain

    t1 = time.perf_counter()
    chain = load_chain(models)
    t2 = time.perf_counter()
    chain(photos[0])                                    # first call: lazy imports, caches
    t3 = time.perf_counter()
    print(f"import {t1 - t0:.2f} s · load {t2 - t1:.2f} s · first call {t3 - t2:.2f} s")
    rows = []
    for p in photos:
        runs = []
        for _ in range(repeat):
            s = time.perf_counter()
            r = chain(p)
            runs.append({**r.seconds, "total": time.perf_counter() - s})
        med = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
        rows.append(med)
        print(f"{Path(p).name:>12} {r.image.size[0]}×{r.image.size[1]} faces {len(r.faces)}  "
              + "  ".join(f"{k} {v:.2f}" for k, v in med.items()))
    mean = {k: statistics.mean(r[k] for r in rows) for k in rows[0]}
    print("mean         " + "  ".join(f"{k} {v:.2f}" for k, v in mean.items()))
    print("share        " + "  ".join(f"{k} {100 * v / mean['total']:.0f}%" for k, v in mean.items() if k != "total"))
    print(f"in process: {mean['total']:.2f} s per photo (target ≤ 2 s)")


def from_cli(photos: list[str], models: dict[str, str]) -> None:
    exe = Path(sys.executable).parent / "faceparse"
    extra = [a for k, v in models.items() for a in ("-m", f"{k}={v}")]
    times = []
    for p in photos:
        with tempfile.TemporaryDirectory() as out:
            s = time.perf_counter()
            r = subprocess.run([str(exe), "chain", p, "-o", out, "-q", *extra], capture_output=True, text=True)
            times.append(time.perf_counter() - s)
        if r.returncode:
            raise SystemExit(f"faceparse chain {p} failed ({r.returncode}):\n{r.stdout[-800:]}{r.stderr[-800:]}")
        print(f"{Path(p).name:>12} CLI {times[-1]:.2f} s")
    print(f"from the command line: {statistics.mean(times):.2f} s per photo (target ≤ 6 s)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="*")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cli", action="store_true", help="also time `faceparse chain` per photo (a fresh process)")
    ap.add_argument("-m", "--model", action="append", default=[], metavar="STAGE=REF")
    args = ap.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)    # the CLI's processes too
    import torch

    torch.set_num_threads(args.threads)
    models = dict(m.split("=", 1) for m in args.model)
    photos = _photos(args.photos)
    in_process(photos, args.repeat, models)
    if args.cli:
        from_cli(photos, models)
    return 0


if __name__ == "__main__":
    sys.exit(main())
