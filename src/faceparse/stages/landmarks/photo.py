"""The landmark model on photos from the command line (`faceparse predict --stage landmarks`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# Imports inside functions here: this module is on the start-up path of the command line, the page or the
# router, so heavy libraries load on first use (tests/code/test_light_imports.py)


def predict_steps(stage, net, meta, out: Path, detect: bool = True):
    """(run: photos → (68, 2) points per face in the photo's pixels, plan (or NoFaceError), write:
    <stem>_points.json + <stem>_overlay.png, what)."""
    from PIL import Image

    from ...photos import NoFaceError, faces_json

    def run(images, names):
        outs: list = []
        for img, name in zip(images, names):
            try:
                outs.append(stage.predict_photo(net, meta, img, detect=detect, what=name))
            except NoFaceError as e:
                outs.append(e)
        return outs

    def write(path, stem, img, pred):
        pts, plan = pred
        jp, ov = out / f"{stem}_points.json", out / f"{stem}_overlay.png"
        jp.write_bytes(points_json(pts, img.size, plan=plan))
        Image.fromarray(draw_points(img, pts)).save(ov)
        return {"input": str(path), "ok": True, "points": str(jp), "overlay": str(ov), "num_points": len(pts[0]),
                "faces": faces_json(plan)}

    return run, write, "68 landmarks"


def points_json(points: list[np.ndarray], image_size: tuple[int, int], version: str = "", plan=None) -> bytes:
    """The answer for one photo: ``faces`` (each detected face's box, score and 68 points) and ``points``, the
    most confident face's points (what one-face clients read)."""
    faces = plan.faces if plan is not None else []
    per_face = [{**(faces[k].to_dict() if k < len(faces) else {}), "points68": np.round(p, 3).tolist()}
                for k, p in enumerate(points)]
    return json.dumps({"points": np.round(points[0], 3).tolist(), "num_points": int(len(points[0])),
                       "faces": per_face, "image_size": list(image_size),
                       "convention": "iBUG 68, (x, y) pixels of the input image",
                       **({"model_version": version} if version else {})}).encode()


def draw_points(image, points, colour=(0, 255, 0)) -> np.ndarray:
    """The photo with the points drawn (one (68, 2) array, or a list of them: one per face; radius scaled
    with the face, or with the image for a single array)."""
    import cv2

    out = np.ascontiguousarray(np.asarray(image.convert("RGB") if hasattr(image, "convert") else image).copy())
    shapes = points if isinstance(points, list) else [points]
    for pts in shapes:
        pts = np.asarray(pts, dtype=np.float64)
        span = np.ptp(pts, axis=0).max() if isinstance(points, list) else min(out.shape[:2])
        r = max(1, round(span / 128))
        for x, y in pts:
            cv2.circle(out, (int(round(x)), int(round(y))), r, colour, -1, lineType=cv2.LINE_AA)
    return out
