"""`faceparse ui page` in a real headless Chromium (Debian's, driven by Playwright): a real photo from
shared/fixtures uploaded → one card per registered stage, in registration order: the overlay, the 68
landmarks and the completion maps, and the stages without a model here saying what to run; the resolution
slider re-queries; class toggles; drop and samples; a text file, an oversized file, a model server that is down and
a page server that is gone each give a clear message. Tiny random bundles (serve/testing.py): seconds, not
minutes. Every test saves a screenshot under its tmp dir (page.png, plus named ones).

The README's screenshot (docs/img/ui.png) comes from scripts/ui_screenshot.py (the shipped models, every card
filled); ``test_readme_screenshot`` runs that script's shot into its tmp dir.
"""
from __future__ import annotations

import base64
import io
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from faceparse.config import load_params
from faceparse.serve.testing import completion_bundle, faceless_photos, free_ports, group_photo
from faceparse.stages import stage_names
from ui_browser import VIEWPORT, PageProcess, canvas_sum, drop_file, launch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import ui_screenshot  # noqa: E402

pytestmark = pytest.mark.integration
MAX_UPLOAD_MB = 1.0


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, repo_root) -> Path:
    d = tmp_path_factory.mktemp("ui-bundles")
    completion_bundle(d, load_params(repo_root / "params.yaml", ["registry.tracking_uri=null"]))
    return d


@pytest.fixture(scope="module")
def page_server(bundles, repo_root):
    """In-process mode on the tiny parser + landmark bundles (completion composed from them); the landmark
    model given by the deprecated --landmarks, which still maps onto --model landmarks=…; a 3D model that is
    no bundle (its card says so); the de-occluder the one shipped."""
    p = PageProcess(["-p", str(repo_root / "params.yaml"), "--model", f"parser={bundles / 'parser'}",
                     "--landmarks", str(bundles / "landmarks"), "--model", f"recon3d={bundles / 'no-such-bundle'}",
                     "--in-process",
                     "--max-upload-mb", str(MAX_UPLOAD_MB)], free_ports(1)[0], bundles)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()


@pytest.fixture
def page(browser, tmp_path):
    """A fresh browser context; every request it makes is recorded (the page must fetch nothing from
    elsewhere), console errors too; a screenshot of the final state goes to tmp_path/page.png."""
    ctx = browser.new_context(viewport=VIEWPORT)
    pg = ctx.new_page()
    pg.requests, pg.errors = [], []
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    try:
        pg.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    finally:
        ctx.close()
    foreign = [u for u in pg.requests if not u.startswith(("http://127.0.0.1:", "blob:", "data:"))]
    assert not foreign, f"the page fetched from elsewhere: {foreign}"
    assert not pg.errors, f"JavaScript errors: {pg.errors}"


def open_page(pg, url: str) -> None:
    pg.goto(url)
    pg.wait_for_selector("body[data-state=idle]", timeout=30_000)


def wait_ready(pg, timeout: float = 120_000) -> None:
    pg.wait_for_selector("body[data-state=ready], body[data-state=error]", timeout=timeout)
    if pg.get_attribute("body", "data-state") == "error":
        raise AssertionError(f"the page shows an error: {pg.inner_text('#error')}")


def test_a_real_photo_shows_overlay_landmarks_and_maps_and_the_slider_requeries(page_server, page, real_samples,
                                                                                 tmp_path):
    pg = page
    open_page(pg, page_server.url)
    assert "models in this process" in pg.inner_text("#mode")
    assert "finds the faces in a photo" in pg.inner_text("#face-note") and pg.is_checked("#detect")
    assert pg.evaluate("[...document.querySelectorAll('#stage-list li')].map((li) => li.dataset.stage)") == \
        ["parser", "landmarks", "completion", "fisn", "recon3d"]        # every registered stage, listed
    assert pg.evaluate("[...document.querySelectorAll('#cards article')].map((a) => a.dataset.stage)") == \
        stage_names()                                                   # and a card for each, in that order
    pg.set_input_files("#file", str(real_samples / "0.jpg"))
    wait_ready(pg)
    pg.screenshot(path=str(tmp_path / "photo.png"), full_page=True)
    # the overlay beside the photo, at the default output resolution, with the photo's aspect
    assert pg.get_attribute("#overlay", "data-resolution") == "256"
    assert pg.evaluate("document.querySelector('#overlay').width") == 256
    assert pg.inner_text("#photo-caption") == "0.jpg · 1024 × 1024"
    assert pg.get_attribute("#overlay", "data-faces") == "1" and "1 face found" in pg.inner_text("#timing")
    assert pg.is_visible("#photo") and pg.is_visible("#overlay")
    # legend: every class of the table, its share of the map, a toggle
    names = pg.eval_on_selector_all("#legend li", "els => els.map(e => e.dataset.class)")
    assert names[:3] == ["background", "skin", "nose"] and len(names) == 19
    shares = [float(s.rstrip("%")) for s in pg.eval_on_selector_all("#legend .pct", "els => els.map(e => e.textContent)")]
    assert abs(sum(shares) - 100) < 1.5
    # which model answered: in-process, no canary arm
    src = pg.inner_text("#overlay-source")
    assert "in-process (no canary)" in src and str(page_server_bundle(page_server, "parser")) in src
    # 68 landmarks on the photo, and their card
    assert pg.locator("#points circle").count() == 68
    assert "68 points" in pg.inner_text("#stage-landmarks")
    # M_alpha, M_beta, M_gamma and the occlusion mask, painted
    assert pg.locator("#stage-completion figure[data-ready='1'] canvas").count() == 4
    # the de-occluder ships with faceparse: its card answers with nothing given
    assert "de-occluded, 1024 × 1024 px" in pg.inner_text("#stage-fisn")
    # a stage whose model does not load says which and why, with no output
    text = pg.inner_text("#stage-recon3d")
    assert "cannot load" in text and "no-such-bundle" in text, text
    assert pg.get_attribute("#stage-recon3d", "data-status") == "unavailable"
    assert pg.locator("#stage-recon3d canvas, #stage-recon3d img").count() == 0

    # per-class toggles: none → the photo alone; all → the same overlay again
    full = canvas_sum(pg, "#overlay")
    pg.click("#none")
    bare = canvas_sum(pg, "#overlay")
    assert bare != full and not pg.is_checked("#class-1")
    pg.click("#all")
    assert canvas_sum(pg, "#overlay") == full
    pg.uncheck(f"#class-{names.index('hair')}")
    assert canvas_sum(pg, "#overlay") not in (full, bare) or shares[names.index("hair")] == 0

    # the slider: another output size from the same 64² input (the LIIF property), re-queried and timed
    pg.fill("#resolution", "512")
    pg.wait_for_selector("#overlay[data-resolution='512']", timeout=120_000)
    wait_ready(pg)
    assert pg.evaluate("document.querySelector('#overlay').width") == 512
    timing = pg.inner_text("#timing")
    assert re.search(r"512 × 512 px in \d+ ms round trip \(face parsing alone; its model time \d+ ms\)", timing), timing
    assert pg.inner_text("#resolution-value") == "512 × 512 px"
    pg.fill("#resolution", "64")
    pg.wait_for_selector("#overlay[data-resolution='64']", timeout=60_000)
    pg.screenshot(path=str(tmp_path / "slider-64.png"), full_page=True)


def page_server_bundle(p: PageProcess, stage: str) -> str:
    """The model the page was given for ``stage``: ``--model STAGE=REF``, or the deprecated ``--STAGE REF``."""
    args = [str(a) for a in p.proc.args]
    given = [b.split("=", 1)[1] for a, b in zip(args, args[1:]) if a == "--model" and b.startswith(f"{stage}=")] or \
        [b for a, b in zip(args, args[1:]) if a == f"--{stage}"]
    return given[0]


def test_a_text_file_is_refused_with_a_clear_message(page_server, page, tmp_path, real_samples):
    pg = page
    open_page(pg, page_server.url)
    pg.set_input_files("#file", str(real_samples / "1.jpg"))   # a good photo first: the error replaces it
    wait_ready(pg)
    notes = tmp_path / "notes.txt"
    notes.write_text("this is not a photo\n" * 20)
    pg.set_input_files("#file", str(notes))
    pg.wait_for_selector("body[data-state=error]", timeout=60_000)
    pg.screenshot(path=str(tmp_path / "text-file.png"), full_page=True)
    assert pg.inner_text("#error-title") == "This file is not a photo the page can read"
    msg = pg.inner_text("#error-message")
    assert "notes.txt" in msg and "not a recognisable image format" in msg, msg
    assert not pg.is_visible("#content")          # no stale results beside the error
    # and the page still works
    pg.set_input_files("#file", str(real_samples / "2.jpg"))
    wait_ready(pg)
    assert not pg.is_visible("#error")


def test_an_oversized_file_and_an_unsupported_format_are_refused(page_server, page, tmp_path, real_samples):
    pg = page
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (800, 800, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > MAX_UPLOAD_MB * 1024 * 1024
    open_page(pg, page_server.url)
    assert pg.inner_text("#limit") == "1.0 MB"
    pg.set_input_files("#file", str(big))
    pg.wait_for_selector("body[data-state=error]")
    assert pg.inner_text("#error-title") == "The file is too large"
    size = f"{big.stat().st_size / 1024 / 1024:.1f} MB"
    assert f"big.png is {size}; the page takes at most 1.0 MB" in pg.inner_text("#error-message")
    pg.screenshot(path=str(tmp_path / "too-large.png"), full_page=True)
    gif = tmp_path / "anim.gif"
    Image.new("RGB", (64, 64), (200, 0, 0)).save(gif)
    pg.set_input_files("#file", str(gif))
    pg.wait_for_selector("body[data-state=error]")
    assert pg.inner_text("#error-title") == "This image format is not accepted"
    assert "GIF" in pg.inner_text("#error-message")
    # the server refuses them too (a client that skips the page's own check)
    r = requests.post(f"{page_server.url}/api/analyze", files={"image": ("big.png", big.read_bytes(), "image/png")},
                      timeout=60)
    assert r.status_code == 413 and "too large" in r.json()["error"]["message"]


def test_a_group_photo_is_parsed_face_by_face_and_a_faceless_one_is_answered(page_server, page, real_samples,
                                                                              tmp_path):
    """Detection on the page: two real faces on a wide canvas → a map of the photo's shape with both boxes;
    a landscape → the parser says no face was found (no map); detection off → parsed whole as a crop."""
    pg = page
    group, _ = group_photo(real_samples)
    group.save(tmp_path / "group.jpg", quality=92)
    faceless_photos()["landscape"].save(tmp_path / "landscape.png")
    open_page(pg, page_server.url)
    pg.set_input_files("#file", str(tmp_path / "group.jpg"))
    wait_ready(pg)
    pg.screenshot(path=str(tmp_path / "group.png"), full_page=True)
    assert pg.get_attribute("#overlay", "data-faces") == "2"
    assert pg.evaluate("[document.querySelector('#overlay').width, document.querySelector('#overlay').height]") \
        == [256, round(560 * 256 / 1200)]          # the photo's aspect, long side = the output resolution
    assert "2 faces found" in pg.inner_text("#timing")
    pg.set_input_files("#file", str(tmp_path / "landscape.png"))
    wait_ready(pg)
    assert pg.is_visible("#overlay-message") and not pg.is_visible("#overlay")
    assert pg.get_attribute("#overlay-message", "data-status") == "no_face"
    assert "no face found in this photo" in pg.inner_text("#overlay-message")
    pg.uncheck("#detect")                            # an aligned crop: parsed whole, whatever it shows
    pg.wait_for_selector("#overlay[data-resolution='256']", timeout=60_000)
    wait_ready(pg)
    assert pg.is_visible("#overlay") and pg.get_attribute("#overlay", "data-faces") == ""
    assert pg.evaluate("document.querySelector('#overlay').width") == 256


def test_drop_a_photo_and_pick_a_sample(page_server, page, real_samples, tmp_path):
    pg = page
    open_page(pg, page_server.url)
    drop_file(pg, "#drop", real_samples / "3.jpg", "image/jpeg")
    wait_ready(pg)
    assert pg.inner_text("#photo-caption").startswith("3.jpg")
    assert pg.get_attribute("#overlay", "data-resolution") == "256"
    samples = pg.locator("#samples button")
    assert samples.count() >= 4
    pg.click("#samples button[data-sample*='mask']")
    pg.wait_for_selector("#photo-caption:text-matches('^synth-.*mask')")   # (the CSP forbids eval: no wait_for_function)
    wait_ready(pg)
    assert not pg.is_checked("#detect") and pg.is_visible("#overlay")   # a synthetic face is an aligned crop
    assert pg.locator("#points circle").count() == 68
    pg.screenshot(path=str(tmp_path / "sample.png"), full_page=True)


def test_a_model_server_that_is_down_and_a_page_server_that_is_gone(bundles, browser, tmp_path, real_samples):
    dead, port = free_ports(2)
    p = PageProcess(["--endpoint", f"http://127.0.0.1:{dead}", "--token", "t0ken"], port, bundles)
    ctx = browser.new_context(viewport=VIEWPORT)
    pg = ctx.new_page()
    try:
        open_page(pg, p.url)
        assert pg.inner_text("#mode") == f"endpoint http://127.0.0.1:{dead}"
        assert pg.inner_text("#endpoint-status") == "not answering"
        assert "The model server is not answering" in pg.inner_text("#warning")
        pg.set_input_files("#file", str(real_samples / "0.jpg"))
        pg.wait_for_selector("body[data-state=error]", timeout=60_000)
        assert pg.inner_text("#error-title") == "The model server is not answering"
        msg = pg.inner_text("#error-message")
        assert f"http://127.0.0.1:{dead} is not answering (connection refused)" in msg and "serve start" in msg
        pg.screenshot(path=str(tmp_path / "endpoint-down.png"), full_page=True)
        p.stop()                                   # now the page's own server is gone too
        pg.set_input_files("#file", str(real_samples / "1.jpg"))
        pg.wait_for_selector("#error-title:has-text(\"The page's server\")", timeout=60_000)
        assert pg.inner_text("#error-title") == "The page's server is not answering"
        assert "faceparse ui page" in pg.inner_text("#error-message")
        pg.screenshot(path=str(tmp_path / "page-server-gone.png"), full_page=True)
    finally:
        pg.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        ctx.close()
        p.stop()


def test_through_a_real_endpoint_the_version_and_canary_arm_are_shown(bundles, repo_root, browser, tmp_path,
                                                                       real_samples):
    """The parser served by a real TorchServe behind the canary router (token auth on); the page reads the
    endpoint and the key from the server's run dir. Stages the endpoint does not serve say so."""
    from faceparse.serve import server
    from faceparse.serve.testing import port_overrides, post_prediction

    params = load_params(repo_root / "params.yaml", port_overrides())
    st = server.start(params, model=str(bundles / "parser"), run_dir=tmp_path / "run", model_store=tmp_path / "store",
                      version="7")
    p = None
    ctx = browser.new_context(viewport=VIEWPORT)
    pg = ctx.new_page()
    try:
        p = PageProcess(["-p", str(repo_root / "params.yaml"), "--serve-dir", str(tmp_path / "run")],
                        free_ports(1)[0], tmp_path)
        open_page(pg, p.url)
        assert pg.inner_text("#endpoint-status") == "answering"
        pg.set_input_files("#file", str(real_samples / "0.jpg"))
        wait_ready(pg)
        src = pg.inner_text("#overlay-source")
        assert f"model {st['model_name']}" in src and "version 7" in src and "canary arm stable" in src, src
        photo = (real_samples / "0.jpg").read_bytes()
        direct = post_prediction(st, photo, {"X-Resolution": "256"})
        assert direct.headers["X-Model-Version"] == "7" and direct.headers["X-Canary-Arm"] == "stable"
        # the page's overlay is the endpoint's label map
        assert pg.get_attribute("#overlay", "data-resolution") == "256"
        via_page = requests.post(f"{p.url}/api/parse", files={"image": ("0.jpg", photo)}, data={"resolution": "256"},
                                 timeout=120).json()["stages"]["parser"]
        page_labels = np.frombuffer(base64.b64decode(via_page["labels"]), np.uint8).reshape(256, 256)
        assert (page_labels == np.asarray(Image.open(io.BytesIO(direct.content)))).all()
        assert via_page["source"] == {"model": st["model_name"], "version": "7", "arm": "stable", "via": st["endpoint_url"]}
        assert "this endpoint serves no model named 'faceparse-landmarks'" in pg.inner_text("#stage-landmarks")
        assert "serves no model named 'faceparse-completion'" in pg.inner_text("#stage-completion")
        for name in ("fisn", "recon3d"):                 # every card asks the endpoint
            assert f"serves no model named 'faceparse-{name}'" in pg.inner_text(f"#stage-{name}")
        pg.fill("#resolution", "128")
        pg.wait_for_selector("#overlay[data-resolution='128']", timeout=60_000)
        assert "canary arm stable" in pg.inner_text("#overlay-source")
        # a wrong token: the stage says the endpoint refused it (no 5xx, no made-up map)
        p.stop()
        p = PageProcess(["-p", str(repo_root / "params.yaml"), "--endpoint", st["endpoint_url"], "--token", "wrong"],
                        free_ports(1)[0], tmp_path)
        r = requests.post(f"{p.url}/api/analyze", files={"image": ("0.jpg", photo)}, timeout=120)
        parser = r.json()["stages"]["parser"]
        assert r.status_code == 200 and parser["status"] == "error" and "refused the token" in parser["message"], parser
    finally:
        pg.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        ctx.close()
        if p is not None:
            p.stop()
        server.stop(tmp_path / "run")


def test_readme_screenshot(browser, real_samples, tmp_path):
    """The README's picture comes from scripts/ui_screenshot.py: a fresh install's page (the shipped models,
    nothing trained or registered) with every card answering a real fixture photo with a bar over its mouth.
    Here into tmp_path; `python scripts/ui_screenshot.py` writes docs/img/ui.png."""
    shot = ui_screenshot.shoot(ui_screenshot.occluded_photo(real_samples / "0.jpg", tmp_path), tmp_path / "ui.png",
                               tmp_path, browser)
    assert Image.open(shot).size[0] == VIEWPORT["width"]


def test_the_api_refuses_bad_requests_without_a_traceback(page_server):
    u = page_server.url
    r = requests.get(u, timeout=10)
    assert r.status_code == 200 and "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert "<script src=\"/static/app.js\"" in r.text and "http" not in r.text.split("<body", 1)[1].replace(
        "http://www.w3.org/2000/svg", "")                          # no outside address in the page
    assert requests.get(f"{u}/static/..%2Fapp.py", timeout=10).status_code == 404
    assert requests.get(f"{u}/api/samples/nope.jpg", timeout=10).status_code == 404
    for kw, status in [({"data": b"raw"}, 400), ({"files": {"other": ("a", b"x")}}, 400),
                       ({"files": {"image": ("e.jpg", b"")}}, 400),
                       ({"files": {"image": ("t.txt", b"hello")}}, 400)]:
        r = requests.post(f"{u}/api/analyze", timeout=30, **kw)
        assert r.status_code == status and r.json()["error"]["message"], (kw, r.text[:300])
    photo = io.BytesIO()
    Image.new("RGB", (80, 80), (120, 90, 60)).save(photo, "PNG")
    r = requests.post(f"{u}/api/parse", files={"image": ("p.png", photo.getvalue())}, data={"resolution": "5000"},
                      timeout=30)
    assert r.status_code == 400 and "resolution" in r.json()["error"]["message"]
    r = requests.post(f"{u}/api/parse", files={"image": ("p.png", photo.getvalue())}, data={"resolution": "96"},
                      timeout=60)
    parser = r.json()["stages"]["parser"]    # a plain brown square holds no face: said so, no map
    assert r.status_code == 200 and parser["status"] == "no_face" and "no face found" in parser["message"], parser
    r = requests.post(f"{u}/api/parse", files={"image": ("p.png", photo.getvalue())},
                      data={"resolution": "96", "detect": "maybe"}, timeout=30)
    assert r.status_code == 400 and "detect" in r.json()["error"]["message"]
    r = requests.post(f"{u}/api/parse", files={"image": ("p.png", photo.getvalue())},
                      data={"resolution": "96", "detect": "false"}, timeout=60)
    body = r.json()
    assert r.status_code == 200 and body["stages"]["parser"]["resolution"] == 96
    assert len(base64.b64decode(body["stages"]["parser"]["labels"])) == 96 * 96
