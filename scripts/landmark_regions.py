"""Where a landmark model beats the trivial baseline on real photos, region by region: NME against the reference
points beside the photos (dlib68.json) of the model and of its mean shape similarity-fitted to the face detector's
five points (faceparse.photo_eval.photo_point_errors), and their ratio, over all 68 points, the 51 without the jaw,
the 41 of eyes, nose and mouth, and each region.

    python scripts/landmark_regions.py [--model REF] [--fixtures DIR]
"""
from __future__ import annotations

import argparse

import numpy as np

import faceparse
from faceparse.ibug68 import REGIONS
from faceparse.photo_eval import photo_point_errors, reference_points

SETS = {"all 68": range(68), "51 (no jaw)": range(17, 68), "41 (eyes, nose, mouth)": range(27, 68), **REGIONS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="landmarks", help="a landmark bundle, models:/ URI or stage name (default: "
                                                         "the shipped model)")
    ap.add_argument("--fixtures", default="../shared/fixtures/celebamask-hq-samples",
                    help="photos with dlib68.json beside them")
    a = ap.parse_args()
    rows = list(photo_point_errors(faceparse.load(a.model), reference_points(a.fixtures)))
    ours, base = np.array([err for _, err, _ in rows]), np.array([b for _, _, b in rows])
    print(f"{'points':24s} {'model':>7s} {'baseline':>9s} {'ratio':>6s}")
    for name, idx in SETS.items():
        o, b = ours[:, list(idx)].mean(), base[:, list(idx)].mean()
        print(f"{name:24s} {o:7.4f} {b:9.4f} {o / b:6.2f}")


if __name__ == "__main__":
    main()
