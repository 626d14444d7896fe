"""Hostile requests through the door users call: the canary router (`faceparse serve` starts it in front of
TorchServe; what the README's curl and every client post to), for every served model stage whose tiny bundle a
test can build (parser, landmarks, completion, FISN, 3D reconstruction; one real TorchServe at a time).

Two matrices, stage × case:

* hostile bodies (a decompression bomb, a body over the 20 MB limit, truncated JPEG / PNG, random bytes, an
  empty body) through each way in — a raw body, no Content-Type, a multipart form, KServe v1 JSON — and no /
  a wrong token: each is answered with its 4xx and a message naming the problem, never a 5xx, never a hang
  (every request has a deadline);
* a good photo under each Content-Type a client may send (image/jpeg, image/png, application/octet-stream,
  none, text/plain, curl's form default, application/json — TorchServe hands the handler the raw bytes when
  they are not JSON —, a multipart form, KServe v1 JSON): answered 200 with the stage's default answer; and
  the shared malformed forms and JSON bodies (``CLIENT_MISTAKES``) with a 4xx and a message.

TorchServe directly is held to the same cases in test_serving.py (test_fuzz_malformed_requests_get_4xx)."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import requests
from PIL import Image

from faceparse.config import load_params
from faceparse.serve import server
from faceparse.serve.testing import (CLIENT_MISTAKES, completion_bundle, landmark_bundle, recon3d_bundle, serve_stage,
                                     tiny_bundle)

pytestmark = pytest.mark.integration

DEADLINE_S = 120          # "never a hang": every request must be answered within this
LIMIT = 20 * 1024 * 1024  # the router's (and TorchServe's) request size limit


def _fisn(tmp, params):
    from test_serving_fisn import fisn_bundle   # tests/integration is on sys.path (pytest's rootdir-less import)

    return fisn_bundle(tmp, params)


def _recon3d(tmp, params):
    return recon3d_bundle(tmp / "bundle")


# stage → (bundle builder, the default answer's Content-Type)
STAGES = {
    "parser": (lambda tmp, params: tiny_bundle(tmp / "bundle", input_size=64, stage="parser"), "image/png"),
    "landmarks": (lambda tmp, params: landmark_bundle(tmp / "bundle"), "application/json"),
    "completion": (lambda tmp, params: completion_bundle(tmp, params), "image/png"),
    "fisn": (_fisn, "image/png"),
    "recon3d": (_recon3d, "application/json"),
}


@pytest.fixture(scope="module", params=list(STAGES))
def door(request, tmp_path_factory, repo_root):
    """(stage, server state) of one served stage behind its router; pytest runs every test of one stage before
    the next stage's server starts, so only one TorchServe runs at a time."""
    stage = request.param
    tmp = tmp_path_factory.mktemp(f"doors-{stage}")
    bundle = STAGES[stage][0](tmp, load_params(repo_root / "params.yaml", ["registry.tracking_uri=null"]))
    served = serve_stage(repo_root / "params.yaml", stage, bundle, tmp)
    st, _ = next(served)
    assert st["router"] and st["endpoint_url"] == st["router"]["url"]   # the door under test is the router
    yield stage, st
    served.close()      # server.stop in serve_stage's finally


@pytest.fixture(scope="module")
def photo(real_samples) -> bytes:
    return (real_samples / "0.jpg").read_bytes()


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def hostile_bodies(photo: bytes) -> dict[str, tuple[bytes, int, tuple[str, ...]]]:
    """case → (body, status, words one of which the message must contain (lower case))."""
    bomb = io.BytesIO()
    Image.new("1", (8000, 8000)).save(bomb, "PNG")        # 64 MP declared, < 100 kB on the wire
    png = _png(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    return {
        "decompression bomb": (bomb.getvalue(), 413, ("pixels", "too large")),
        "body over 20 MB": (b"\xff\xd8\xff" + b"\x00" * (LIMIT + 1024), 413, ("size", "too large")),
        "truncated jpeg": (photo[: len(photo) // 3], 400, ("truncated", "incomplete", "broken", "not a")),
        "truncated png": (png[: len(png) // 2], 400, ("truncated", "incomplete", "broken", "not a")),
        "random bytes": (np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(), 400,
                         ("not an image", "not a", "unsupported", "unknown")),
        "empty body": (b"", 400, ("empty", "no image")),
    }


WAYS = ("raw", "no content-type", "multipart", "kserve json")


def post(st: dict, token: str | None = "ok", **kw) -> requests.Response:
    """POST to the stage's model through the router, with its token (``"ok"``), another, or none."""
    key = server.token(st["run_dir"]) if token == "ok" else token
    headers = {**({"Authorization": f"Bearer {key}"} if key else {}), **kw.pop("headers", {})}
    s = requests.Session()
    s.trust_env = False
    try:
        return s.post(f"{st['endpoint_url']}/predictions/{st['model_name']}", headers=headers, timeout=DEADLINE_S,
                      **kw)
    finally:
        s.close()


def send(st: dict, body: bytes, way: str, headers: dict | None = None) -> requests.Response:
    h = dict(headers or {})
    if way == "raw":
        return post(st, data=body, headers={"Content-Type": "application/octet-stream", **h})
    if way == "no content-type":
        return post(st, data=body, headers=h)                 # requests sets none for bytes
    if way == "multipart":
        return post(st, files={"data": ("face.jpg", body, "image/jpeg")}, headers=h)
    if way == "kserve json":
        return post(st, data=json.dumps({"instances": [{"data": base64.b64encode(body).decode()}]}).encode(),
                    headers={"Content-Type": "application/json", **h})
    raise AssertionError(way)


def message_of(r: requests.Response) -> str:
    """The refusal's message: the JSON ``message`` TorchServe, the handler and the router write, or the text of
    aiohttp's own 413 (the router refuses an oversized body before reading it whole)."""
    try:
        body = json.loads(r.text)
    except ValueError:
        return r.text
    return str(body.get("message") or "") if isinstance(body, dict) else ""


SEEN: dict[str, dict[str, int]] = {}   # stage → case → status, printed per stage (pytest -s) for the record


def seen(stage: str, case: str, r: requests.Response) -> requests.Response:
    SEEN.setdefault(stage, {})[case] = r.status_code
    return r


def assert_refused(r: requests.Response, status: int, words: tuple[str, ...], what: str) -> None:
    stage, _, case = what.partition(": ")
    seen(stage, case, r)
    assert r.status_code == status, (what, r.status_code, r.text[:300])
    msg = message_of(r)
    assert msg, (what, r.text[:300])
    assert any(w in msg.lower() for w in words), (what, msg)
    assert "Traceback" not in r.text and 'File "' not in r.text, what


# --- hostile bodies × ways in ---------------------------------------------------------------------------

@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("case", ["decompression bomb", "body over 20 MB", "truncated jpeg", "truncated png",
                                  "random bytes", "empty body"])
def test_a_hostile_body_is_refused_with_its_4xx_and_a_message(door, photo, case, way):
    stage, st = door
    body, status, words = hostile_bodies(photo)[case]
    if case == "empty body" and way == "kserve json":
        words = ("empty", "no image", "not an image")
    if case == "body over 20 MB" and way == "multipart":
        words = ("size", "too large")
    assert_refused(send(st, body, way), status, words, f"{stage}: {case} via {way}")


@pytest.mark.parametrize("way", WAYS)
def test_a_body_its_content_encoding_does_not_decode_is_a_400(door, photo, way):
    """``Content-Encoding: gzip`` over bytes that are not gzip: aiohttp fails reading the body (the router
    answered HTTP 500 before); a real gzip-encoded photo is answered."""
    stage, st = door
    r = send(st, b"not gzip at all" * 8, way, {"Content-Encoding": "gzip"})
    assert_refused(r, 400, ("content-encoding", "encoding", "malformed"), f"{stage}: corrupt gzip via {way}")
    if way == "raw":
        import gzip

        ok = post(st, data=gzip.compress(photo), headers={"Content-Encoding": "gzip"})
        seen(stage, "gzip-encoded photo", ok)
        assert ok.status_code == 200, (stage, ok.status_code, ok.text[:300])


@pytest.mark.parametrize("token", [None, "wrong"], ids=["no token", "wrong token"])
def test_no_or_a_wrong_token_is_refused(door, photo, token):
    stage, st = door
    r = seen(stage, f"{token or 'no'} token", post(st, token=token, data=photo))
    assert r.status_code in (400, 401, 403), (stage, r.status_code, r.text[:300])   # TorchServe 0.12 says 400
    assert "token" in message_of(r).lower(), (stage, r.text[:300])


# --- a good photo × Content-Type -----------------------------------------------------------------------

CONTENT_TYPES = ["image/jpeg", "image/png", "application/octet-stream", None, "text/plain",
                 "application/x-www-form-urlencoded", "application/json", "multipart", "kserve json"]


@pytest.mark.parametrize("ctype", CONTENT_TYPES, ids=[c or "missing" for c in CONTENT_TYPES])
def test_a_good_photo_is_answered_whatever_its_content_type(door, photo, ctype):
    stage, st = door
    want = STAGES[stage][1]
    if ctype == "multipart":
        r = send(st, photo, "multipart")
    elif ctype == "kserve json":
        r = send(st, photo, "kserve json")
        want = "application/json"
    else:
        r = post(st, data=photo, headers={"Content-Type": ctype} if ctype else {})
    seen(stage, f"photo as {ctype or 'no Content-Type'}", r)
    assert r.status_code == 200, (stage, ctype, r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith(want), (stage, ctype, r.headers["Content-Type"])
    if ctype == "kserve json":
        assert len(r.json()["predictions"]) == 1
    elif want == "image/png":
        Image.open(io.BytesIO(r.content)).verify()
    else:
        assert isinstance(r.json(), dict)


@pytest.mark.parametrize("body,ctype", CLIENT_MISTAKES, ids=[f"{c}: {b[:16]!r}" for b, c in CLIENT_MISTAKES])
def test_a_client_mistake_is_a_4xx_with_a_message(door, body, ctype):
    """The shared list of malformed forms and JSON (faceparse.serve.testing.CLIENT_MISTAKES), every stage."""
    stage, st = door
    r = seen(stage, f"{ctype}: {body[:16]!r}", post(st, data=body, headers={"Content-Type": ctype}))
    assert 400 <= r.status_code < 500, (stage, r.status_code, r.text[:300])
    assert message_of(r), (stage, r.text[:300])


def test_the_stage_still_answers_after_the_matrix(door, photo):
    """Last of each stage's tests: nothing hostile left the worker or the router broken."""
    stage, st = door
    r = post(st, data=photo)
    assert r.status_code == 200, (stage, r.text[:300])
    s = requests.Session()
    s.trust_env = False
    assert s.get(f"{st['endpoint_url']}/-/healthz", timeout=10).json()["ok"]
    for case, status in SEEN.get(stage, {}).items():
        print(f"MATRIX {stage} | {case} | {status}")
