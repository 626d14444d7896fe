"""The web page's cards are the registered stages' own (faceparse.ui.cards): one per stage, in registration
order, each drawn from its package's ``ui`` module — the de-occlusion (fisn) and 3D (recon3d) stages included.
A card whose model is missing (none given, none shipped, no registry champion) says what to run, as a 4xx for
the card alone and an ``unavailable`` answer on the whole page — never a 5xx. Tiny random bundles, the page
server (aiohttp) in a thread of this process, one real photo; the rendering in a real headless Chromium."""
from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from faceparse import api, stages
from faceparse.config import load_params
from faceparse.serve.imaging import encode_png
from faceparse.serve.testing import free_ports, recon3d_bundle
from faceparse.stages import stage_names
from faceparse.ui.app import PageServer, make_app, synthetic_samples
from faceparse.ui.backends import InProcess
from faceparse.ui.cards import Card, card_of, stage_cards
from test_serving_fisn import fisn_bundle
from ui_browser import VIEWPORT, launch

pytestmark = pytest.mark.integration
PLUGIN = Path(__file__).resolve().parents[1] / "fixtures" / "plugin"


class ThreadedPage:
    """The page's aiohttp app on 127.0.0.1 in a thread of this process (so a test picks any backend)."""

    def __init__(self, backend, chain=None):
        from aiohttp import web

        self.port = free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(make_app(PageServer(backend, synthetic_samples(128), chain=chain)))
        started = threading.Event()

        def serve():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.runner.setup())
            self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        assert started.wait(60), "the page's server did not start"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def post(page: ThreadedPage, path: str, photo: bytes, **data) -> requests.Response:
    return requests.post(f"{page.url}{path}", files={"image": ("0.jpg", photo, "image/jpeg")}, data=data, timeout=300)


def png(entry: dict) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(entry["png"])))


@pytest.fixture(scope="module")
def params(repo_root, tmp_path_factory):
    """The project's params, its registry an empty place: no stage has a champion."""
    store = tmp_path_factory.mktemp("no-registry") / "mlflow.db"
    return load_params(repo_root / "params.yaml", [f"registry.tracking_uri=sqlite:///{store}"])


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, params) -> Path:
    """Tiny random parser, landmark, completion (composed), FISN (carrying it) and recon3d bundles."""
    d = tmp_path_factory.mktemp("ui-card-bundles")
    fisn_bundle(d, params)
    recon3d_bundle(d / "recon3d")
    return d


@pytest.fixture(scope="module")
def bare(params, tmp_path_factory):
    """The page with no model anywhere: none registered, none given, none shipped (an empty pretrained/)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(api, "PRETRAINED", tmp_path_factory.mktemp("nothing-shipped"))
        p = ThreadedPage(InProcess(params, {}))
    yield p
    p.stop()


@pytest.fixture(scope="module")
def shipped(params):
    """The page of a fresh install: nothing trained or registered, the models shipped with faceparse."""
    p = ThreadedPage(InProcess(params, {}))
    yield p
    p.stop()


@pytest.fixture(scope="module")
def full(params, bundles):
    """The page with every stage's model given (the completion composed from the parser and landmarks)."""
    refs = {s: str(bundles / s) for s in ("parser", "landmarks", "fisn", "recon3d")}
    p = ThreadedPage(InProcess(params, refs))
    yield p
    p.stop()


def test_the_cards_are_the_registered_stages_in_registration_order():
    cards = stage_cards()
    assert [c.name for c in cards] == stage_names()
    assert all(isinstance(c.card, Card) for c in cards), [c.name for c in cards if c.card is None]
    titles = {c.name: c.card.title for c in cards}
    assert titles["fisn"] == "De-occluded face" and titles["recon3d"] == "3D reconstruction"
    assert [c.name for c in cards if c.card.layer] == ["parser", "landmarks"]
    assert [c.name for c in cards if c.card.resizable] == ["parser"]


def test_a_stage_without_a_ui_module_is_listed_and_says_so(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.setattr(stages, "_PACKAGES", dict(stages._PACKAGES))
    stages.register_stage("toy", "toy_stage")
    toy = card_of("toy")
    assert toy.card is None and "no card on this page" in toy.message and "ui module" in toy.message
    assert [c.name for c in stage_cards()] == stage_names() and stage_names()[-1] == "toy"
    info = toy.info()
    assert info["card"] is False and info["name"] == "toy" and info["message"] == toy.message


def test_a_card_whose_model_is_missing_says_what_to_run_never_a_5xx(bare, real_samples):
    info = requests.get(f"{bare.url}/api/info", timeout=30).json()
    assert [c["name"] for c in info["cards"]] == stage_names()
    assert [s["name"] for s in info["registered"]] == stage_names()
    photo = (real_samples / "0.jpg").read_bytes()
    for name, cmd in (("recon3d", "faceparse reconstruct"), ("fisn", "make run"),
                      ("parser", "--model parser="), ("landmarks", "--model landmarks="),
                      ("completion", "--model completion=")):
        assert info["stages"][name]["available"] is False and info["stages"][name]["no_model"] is True
        r = post(bare, f"/api/stages/{name}", photo)
        assert r.status_code == 409, (name, r.status_code, r.text[:300])
        err = r.json()["error"]
        assert err["title"] == "This stage has no model here"
        assert "make run" in err["message"] and cmd in err["message"], err["message"]
    assert "--model" in info["stages"]["recon3d"]["message"]
    r = post(bare, "/api/analyze", photo)
    assert r.status_code == 200
    answers = r.json()["stages"]
    assert list(answers) == stage_names()
    assert all(a["status"] == "unavailable" and a["no_model"] and "make run" in a["message"] for a in answers.values())
    r = post(bare, "/api/stages/nope", photo)
    assert r.status_code == 404 and "no model stage named 'nope'" in r.json()["error"]["message"]


def test_a_fresh_install_fills_every_card_from_the_shipped_models(shipped, real_samples):
    """Nothing trained, nothing registered: every card answers a real photo (issue #32)."""
    info = requests.get(f"{shipped.url}/api/info", timeout=30).json()
    for name in ("parser", "landmarks", "fisn", "recon3d"):
        assert info["stages"][name]["available"] is True, (name, info["stages"][name])
        assert "pretrained" in info["stages"][name]["model"], info["stages"][name]["model"]
    assert info["stages"]["completion"]["available"] is True
    r = post(shipped, "/api/analyze", (real_samples / "0.jpg").read_bytes())
    assert r.status_code == 200
    assert {k: a["status"] for k, a in r.json()["stages"].items()} == {n: "ok" for n in stage_names()}


def test_every_card_answers_a_real_photo_with_its_images(full, bundles, real_samples):
    photo = (real_samples / "0.jpg").read_bytes()
    w, h = Image.open(io.BytesIO(photo)).size
    info = requests.get(f"{full.url}/api/info", timeout=30).json()
    assert all(info["stages"][n]["available"] for n in stage_names()), info["stages"]
    r = post(full, "/api/analyze", photo)
    assert r.status_code == 200, r.text[:500]
    answers = r.json()["stages"]
    assert list(answers) == stage_names()
    assert {n: a["status"] for n, a in answers.items()} == {n: "ok" for n in stage_names()}
    # de-occlusion: the photo at its own size and the mask of the pixels replaced
    fisn = answers["fisn"]
    assert [i["key"] for i in fisn["images"]] == ["deoccluded", "mask"]
    out, mask = (png(i) for i in fisn["images"])
    assert out.size == (w, h) and out.mode == "RGB" and mask.size == (w, h)
    assert set(np.unique(np.asarray(mask))) <= {0, 255}
    assert 0.0 <= fisn["occluded_fraction"] <= 1.0 and "replaced" in fisn["lines"][0]
    assert fisn["source"]["model"] == info["stages"]["fisn"]["model"] == str(bundles / "fisn")
    assert fisn["source"]["version"].startswith("unregistered")
    # 3D: the render over the photo (its size) and the mesh rendered alone, with the pose
    rec = answers["recon3d"]
    assert [i["key"] for i in rec["images"]] == ["overlay", "mesh"]
    assert png(rec["images"][0]).size == (w, h) and 64 <= png(rec["images"][1]).size[0] <= 512   # the face's own px
    assert set(rec["pose_degrees"]) == {"pitch", "yaw", "roll"} and "pose" in rec["lines"][0]
    # the three the page showed before, now from their own stages' cards
    parser = answers["parser"]
    assert len(base64.b64decode(parser["labels"])) == parser["width"] * parser["height"]
    assert len(answers["landmarks"]["points"]) == 68
    assert [m["key"] for m in answers["completion"]["maps"]] == ["alpha", "beta", "gamma", "occlusion"]
    # one card alone: the same answer shape, 200
    r = post(full, "/api/stages/recon3d", photo)
    assert r.status_code == 200 and list(r.json()["stages"]) == ["recon3d"]
    # no face in the photo: 422 for the card alone
    blank = encode_png(np.full((200, 300, 3), 120, np.uint8))
    r = requests.post(f"{full.url}/api/stages/fisn", files={"image": ("b.png", blank, "image/png")}, timeout=120)
    assert r.status_code == 422 and "no face" in r.json()["error"]["message"]


def test_the_endpoint_answers_decode_into_the_same_cards():
    """What a served fisn / recon3d model answers (faceparse.stages.*.codec) becomes the same card."""
    cards = {c.name: c.card for c in stage_cards()}
    photo = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    mask = np.zeros((40, 60), np.uint8)
    mask[10:20, 10:40] = 255
    fisn = cards["fisn"].endpoint
    assert fisn.formats == ("png", "mask")
    a = fisn.decode({"png": encode_png(photo), "mask": encode_png(mask)}, (60, 40))
    assert [i["key"] for i in a["images"]] == ["deoccluded", "mask"] and a["images"][0]["width"] == 60
    assert a["occluded_fraction"] == pytest.approx(300 / 2400, abs=1e-4)
    rec = cards["recon3d"].endpoint
    assert rec.formats == ("overlay", "json")
    body = json.dumps({"pose": {"degrees": {"pitch": 1.0, "yaw": -20.0, "roll": 3.5}}}).encode()
    a = rec.decode({"overlay": encode_png(photo), "json": body}, (60, 40))
    assert [i["key"] for i in a["images"]] == ["overlay"] and "yaw -20.0°" in a["lines"][0]


def test_the_page_draws_the_fisn_and_recon3d_cards(full, real_samples, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        ctx = browser.new_context(viewport=VIEWPORT)
        pg = ctx.new_page()
        errors = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        try:
            pg.goto(full.url)
            pg.wait_for_selector("body[data-state=idle]", timeout=30_000)
            assert pg.evaluate("[...document.querySelectorAll('#cards article')].map((a) => a.dataset.stage)") == \
                stage_names()
            pg.set_input_files("#file", str(real_samples / "0.jpg"))
            pg.wait_for_selector("body[data-state=ready], body[data-state=error]", timeout=300_000)
            assert pg.get_attribute("body", "data-state") == "ready", pg.inner_text("#error")
            for name, n in (("fisn", 2), ("recon3d", 2)):
                pg.wait_for_selector(f"#stage-{name} figure[data-ready='1'] img >> nth={n - 1}", timeout=30_000)
                assert pg.get_attribute(f"#stage-{name}", "data-status") == "ok"
                assert pg.locator(f"#stage-{name} figure img").count() == n
            assert pg.evaluate("document.querySelector('#stage-fisn figure[data-image=deoccluded] img').naturalWidth") \
                == 1024
            assert "pose" in pg.inner_text("#stage-recon3d") and "replaced" in pg.inner_text("#stage-fisn")
            assert pg.locator("#stage-completion figure[data-ready='1'] canvas").count() == 4
            assert pg.locator("#points circle").count() == 68
        finally:
            pg.screenshot(path=str(tmp_path / "page.png"), full_page=True)
            ctx.close()
            browser.close()
        assert not errors, errors
