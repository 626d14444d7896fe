"""The landmark model's points on real photos, as pictures for docs/: each fixture photo with the model's points
(red) and dlib's reference points (green), and the two-face group photo built from two fixtures (the model's
points on both faces; dlib's, moved with the pasted faces, in green).

    python scripts/landmark_overlays.py [--model REF] [--fixtures DIR] [--out docs/img/landmarks]

Writes <out>/fixture-<k>.jpg, <out>/group.jpg and prints the per-photo NME table (faceparse.photo_eval).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import faceparse
from faceparse.align import apply
from faceparse.photo_eval import nme_table, reference_points, score_landmarks
from faceparse.serve.testing import group_photo
from faceparse.stages.landmarks.photo import draw_points

SIDE = 512   # pictures are written at most this large


def group_reference(refs: dict[str, np.ndarray]) -> list[np.ndarray]:
    """dlib's points of fixtures 1 and 2 moved as ``serve.testing.group_photo`` pastes them (1: 300 px at
    (60, 200); 2: 420 px rotated 15° counter-clockwise about its centre, at (700, 40))."""
    small = refs["1.jpg"] * 300 / 1024 + [60, 200]
    a = np.radians(15)
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])   # PIL's rotate: counter-clockwise
    c = np.array([210.0, 210.0])
    large = apply(np.column_stack([rot, c - rot @ c]), refs["2.jpg"] * 420 / 1024) + [700, 40]
    return [small, large]


def save(image: np.ndarray, path: Path) -> None:
    im = Image.fromarray(image)
    im.thumbnail((SIDE * 2, SIDE))
    im.save(path, quality=88)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="landmarks", help="a landmark bundle (default: the shipped one)")
    ap.add_argument("--fixtures", type=Path, default=Path("../shared/fixtures/celebamask-hq-samples"))
    ap.add_argument("--out", type=Path, default=Path("docs/img/landmarks"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lm = faceparse.load(args.model)
    refs = reference_points(args.fixtures)
    for photo, ref in refs.items():
        found = lm(photo)
        save(draw_points(draw_points(found.image, [ref]), found.points, (255, 0, 0)), args.out / f"fixture-{photo.stem}.jpg")
    img, _ = group_photo(args.fixtures)
    found = lm(img)
    save(draw_points(draw_points(img, group_reference({p.name: r for p, r in refs.items()})), found.points,
                     (255, 0, 0)), args.out / "group.jpg")
    print(nme_table(score_landmarks(lm, refs)))
    print(f"wrote {args.out}/fixture-*.jpg and group.jpg ({len(found.points)} faces found in the group photo)")


if __name__ == "__main__":
    main()
