"""Benchmark the per-face fit of the recon3d stage (issue #32, faceparse.face3d.fit): per face of a synthetic
3D split, the fit's wall time (one face at a time, as `faceparse reconstruct` runs it) and its vertex error
against the regressor's and the mean face's.

    OMP_NUM_THREADS=1 python scripts/bench_fit.py --bundle artifacts/recon3d/model --data data/recon3d \
        [--split test] [--n 24] [--condition clean|occluded] [--points predicted|true] [--set steps=12 ...]

Prints one line per face (seconds, landmark / outline / photometric iterations, p90 mm regressor → fitted)
and a summary (mean, median and max seconds per face; mean p90 and mean vertex error in mm). The landmark
model and parser are ``recon3d.fit.landmarks`` / ``parser`` (default: the shipped ones); ``--set`` overrides
any ``recon3d.fit`` key.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="artifacts/recon3d/model", help="the recon3d bundle (its regressor)")
    ap.add_argument("--data", default="data/recon3d", help="a synthetic 3D set (faceparse data synth3d)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=24, help="faces (the split's first)")
    ap.add_argument("--condition", choices=("clean", "occluded"), default="clean")
    ap.add_argument("--points", choices=("predicted", "true"), default="predicted",
                    help="fit to the landmark model's points or the true ones (the upper bound)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recon3d.fit overrides")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from faceparse.bundle import load_bundle
    from faceparse.data.manifest import load_split
    from faceparse.face3d.metrics import face_errors
    from faceparse.stages.recon3d.dataset import Recon3dDataset
    from faceparse.stages.recon3d.fitting import FitInputs, fit_config, fit_each
    from faceparse.stages.recon3d.scoring import scored_vertices

    over = {k: json.loads(v) if v[:1] in "0123456789-[{tfn" else v for k, v in (s.split("=", 1) for s in args.set)}
    params = {"fit": over}
    cfg = fit_config(params)
    if cfg is None:
        raise SystemExit("recon3d.fit.enabled is false: nothing to benchmark")
    net, meta = load_bundle(args.bundle)
    size = int(meta.get("input_size", 128))
    frame = load_split(args.data, args.split).head(args.n)
    ds = Recon3dDataset(frame, size, image_dir="clean" if args.condition == "clean" else None)
    seen = FitInputs.load(params)
    face, sel = net.face, scored_vertices(net.face)
    mean_face = face.mean.numpy()
    rows = []
    print(f"fit: {json.dumps(cfg.to_dict())}")
    for i in range(len(ds)):
        it = ds[i]
        x = it["image"][None]
        with torch.no_grad():
            y0 = net(x).float()
        t0 = time.perf_counter()
        obs = seen.observe(x)
        t_obs = time.perf_counter() - t0
        y, secs = fit_each(net, x, y0, cfg, obs, it["points"][None] if args.points == "true" else None)
        t = face.split(it["coeffs"][None])
        true = face.vertices(t["id"], t["exp"])[0].numpy()

        def p90(yy):
            c = face.split(yy)
            return face_errors(face.vertices(c["id"], c["exp"])[0].detach().numpy(), true, sel)

        e0, e1, eb = p90(y0), p90(y), face_errors(mean_face, true, sel)
        rows.append((secs[0], t_obs, e0["p90_mm"], e1["p90_mm"], eb["p90_mm"], e1["mean_mm"], eb["mean_mm"]))
        print(f"{ds.ids[i]}: fit {secs[0]:.3f} s (+ landmarks/parser {t_obs:.3f} s)  p90 regressor {e0['p90_mm']:.2f} "
              f"→ fitted {e1['p90_mm']:.2f} mm (mean face {eb['p90_mm']:.2f})", flush=True)
    a = np.asarray(rows)
    print(f"\n{len(a)} faces ({args.condition}, {args.points} points): fit seconds per face mean {a[:, 0].mean():.3f}, "
          f"median {np.median(a[:, 0]):.3f}, max {a[:, 0].max():.3f}; landmark model + parser {a[:, 1].mean():.3f} s")
    print(f"p90 mm: mean face {a[:, 4].mean():.3f}, regressor {a[:, 2].mean():.3f}, fitted {a[:, 3].mean():.3f} "
          f"({a[:, 3].mean() / a[:, 4].mean():.3f}× the mean face); mean mm: mean face {a[:, 6].mean():.3f}, "
          f"fitted {a[:, 5].mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
