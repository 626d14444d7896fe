"""A newcomer's requests against a real TorchServe behind the router (one server for the module):
the README's curl command as written, every Content-Type a client may send (4xx for its mistakes, never
5xx), and the one image reader — an EXIF-rotated JPEG and a transparent PNG give the same label map from
`faceparse predict` and from the served model."""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from faceparse.config import load_params
from faceparse.predict import predict
from faceparse.serve import server
from faceparse.serve.testing import CLIENT_MISTAKES, PHOTO_CONTENT_TYPES, port_overrides, tiny_bundle

pytestmark = pytest.mark.integration
RES = 64


@pytest.fixture(scope="module")
def served(tmp_path_factory, repo_root):
    tmp = tmp_path_factory.mktemp("readme")
    bundle = tiny_bundle(tmp / "bundle", seed=0)
    params = load_params(repo_root / "params.yaml", port_overrides())
    st = server.start(params, model=str(bundle), run_dir=tmp / "run", model_store=tmp / "store")
    yield st, bundle
    server.stop(tmp / "run")


def post(st, body: bytes, headers: dict | None = None, path: str = "") -> requests.Response:
    url = f"{st['endpoint_url']}/predictions/{st['model_name']}{path}"
    key = server.token(st["run_dir"])
    return requests.post(url, data=body, headers={"Authorization": f"Bearer {key}", **(headers or {})}, timeout=120)


def label_map(r: requests.Response) -> np.ndarray:
    assert r.status_code == 200, r.text[:300]
    return np.asarray(Image.open(io.BytesIO(r.content)))


def readme_curl(repo_root: Path) -> str:
    """The README's curl request, joined across its line continuation."""
    text = (repo_root / "README.md").read_text()
    m = re.search(r"^curl -H .*?\\\n\s+.*?> label\.png$", text, re.M)
    assert m, "README lost its curl example"
    return m.group(0).replace("\\\n", " ")


def test_readme_curl_as_written_answers_a_png(served, repo_root, real_samples, tmp_path):
    st, bundle = served
    cmd = readme_curl(repo_root)
    assert "Content-Type" not in cmd and "--data-binary @photo.jpg" in cmd   # curl's default content type
    # only the photo, the port and the output file are this test's own
    cmd = (cmd.replace("@photo.jpg", f"@{real_samples / '0.jpg'}").replace("> label.png", f"> {tmp_path / 'label.png'}")
           .replace("http://127.0.0.1:8483", st["endpoint_url"]))
    env = {**os.environ, "FACEPARSE_SERVE_DIR": str(st["run_dir"]),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    data = (tmp_path / "label.png").read_bytes()
    assert data.startswith(b"\x89PNG"), data[:200]
    served_map = np.asarray(Image.open(io.BytesIO(data)))
    # the same photo through `faceparse predict`, in process: the same label map
    out = predict(str(bundle), [real_samples / "0.jpg"], tmp_path / "pred", resolution=served_map.shape[0],
                  progress=False)
    assert out[0]["ok"]
    # equal but for argmax near-ties between processes (thread count, batch shape): see the EXIF test
    assert (served_map == np.asarray(Image.open(out[0]["label"]))).mean() >= 0.998


def test_curl_status_code_of_the_readme_request_is_200(served, repo_root, real_samples):
    st, _ = served
    cmd = readme_curl(repo_root).replace("@photo.jpg", f"@{real_samples / '0.jpg'}") \
        .replace("http://127.0.0.1:8483", st["endpoint_url"]).replace("> label.png", "-o /dev/null")
    env = {**os.environ, "FACEPARSE_SERVE_DIR": str(st["run_dir"]),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(["bash", "-c", f"{cmd} -sS -w '%{{http_code}}'"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.stdout == "200", (r.stdout, r.stderr)


@pytest.mark.parametrize("ctype", PHOTO_CONTENT_TYPES)
def test_a_raw_photo_is_answered_whatever_its_content_type(served, real_samples, ctype):
    st, _ = served
    photo = (real_samples / "1.jpg").read_bytes()
    r = post(st, photo, {"X-Resolution": str(RES), **({"Content-Type": ctype} if ctype else {})})
    assert label_map(r).shape == (RES, RES)


@pytest.mark.parametrize("body,ctype", CLIENT_MISTAKES)
def test_client_mistakes_are_4xx_and_the_server_lives_on(served, real_samples, body, ctype):
    st, _ = served
    r = post(st, body, {"Content-Type": ctype})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert r.json()["message"]
    assert label_map(post(st, (real_samples / "2.jpg").read_bytes(), {"X-Resolution": str(RES)})).shape == (RES, RES)


def test_multipart_with_options_in_form_fields(served, real_samples):
    st, _ = served
    key = server.token(st["run_dir"])
    r = requests.post(f"{st['endpoint_url']}/predictions/{st['model_name']}", timeout=120,
                      headers={"Authorization": f"Bearer {key}"},
                      files={"data": ("x.jpg", (real_samples / "3.jpg").read_bytes(), "image/jpeg")},
                      data={"resolution": "96", "format": "png"})
    assert label_map(r).shape == (96, 96)


def exif_rotated_jpeg(src: Path, dst: Path) -> Path:
    """The photo's pixels stored rotated 90° with EXIF orientation 6, so a viewer shows it upright."""
    img = Image.open(src).convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(dst, "JPEG", quality=95, exif=exif.tobytes())
    return dst


def transparent_png(src: Path, dst: Path) -> Path:
    """The photo with its left third fully transparent over random colours (a reader must not show them)."""
    rgba = np.asarray(Image.open(src).convert("RGBA")).copy()
    w = rgba.shape[1] // 3
    rgba[:, :w, :3] = np.random.default_rng(0).integers(0, 256, (rgba.shape[0], w, 3))
    rgba[:, :w, 3] = 0
    Image.fromarray(rgba, "RGBA").save(dst)
    return dst


def test_exif_and_transparency_read_alike_by_predict_and_the_server(served, real_samples, tmp_path):
    st, bundle = served
    files = [exif_rotated_jpeg(real_samples / "0.jpg", tmp_path / "rotated.jpg"),
             transparent_png(real_samples / "1.jpg", tmp_path / "transparent.png")]
    out = predict(str(bundle), files, tmp_path / "pred", resolution=RES, progress=False)
    for f, res in zip(files, out):
        served_map = label_map(post(st, f.read_bytes(), {"X-Resolution": str(RES)}))
        assert len(np.unique(served_map)) > 1
        # the same pixels in: the maps agree but for argmax near-ties, where the worker's thread count and
        # batch shape change the float summation order (seen: 2 of 4096 pixels). A reading difference
        # (EXIF ignored, alpha onto black) changes a large part of the map — checked below.
        agree = (np.asarray(Image.open(res["label"])) == served_map).mean()
        assert agree >= 0.998, (f.name, agree)
    # and what both read is the upright photo / white where transparent, not the stored pixels
    upright = label_map(post(st, (real_samples / "0.jpg").read_bytes(), {"X-Resolution": str(RES)}))
    stored = Image.open(files[0])
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95)   # the same pixels without the EXIF tag
    sideways = label_map(post(st, buf.getvalue(), {"X-Resolution": str(RES)}))
    rotated_map = np.asarray(Image.open(out[0]["label"]))
    assert (rotated_map == upright).mean() > (rotated_map == sideways).mean()
    white = np.asarray(Image.open(files[1]).convert("RGBA")).copy()
    white[white[..., 3] == 0] = 255
    buf = io.BytesIO()
    Image.fromarray(white[..., :3]).save(buf, "PNG")
    composited = label_map(post(st, buf.getvalue(), {"X-Resolution": str(RES)}))
    assert (composited == np.asarray(Image.open(out[1]["label"]))).mean() >= 0.998
    black = np.asarray(Image.open(files[1]).convert("RGBA")).copy()
    black[black[..., 3] == 0] = 0                      # the other reading of "transparent"
    buf = io.BytesIO()
    Image.fromarray(black[..., :3]).save(buf, "PNG")
    on_black = label_map(post(st, buf.getvalue(), {"X-Resolution": str(RES)}))
    assert (on_black == composited).mean() < 0.99      # so the check above can tell the readings apart


def test_rollout_auto_that_does_not_promote_exits_4(served, repo_root, real_samples, tmp_path, monkeypatch):
    """Documented exit code 4: a challenger whose weights do not load is refused at registration."""
    import json
    import shutil

    from typer.testing import CliRunner

    from faceparse.cli import app

    st, bundle = served
    bad = tmp_path / "unloadable"
    shutil.copytree(bundle, bad)
    meta = json.loads((bad / "bundle.json").read_text())
    meta["model_config"]["width"] = 12
    (bad / "bundle.json").write_text(json.dumps(meta))
    monkeypatch.chdir(repo_root)
    r = CliRunner().invoke(app, ["rollout", "auto", "--model", str(bad), "--version", "9", "--run-dir", str(st["run_dir"])])
    assert r.exit_code == 4, r.output
    assert '"decision": "rolled-back"' in r.output
    assert label_map(post(st, (real_samples / "0.jpg").read_bytes(), {"X-Resolution": str(RES)})).size  # still serving
