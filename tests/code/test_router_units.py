"""Fast unit tests of the canary router (`make mutation`): routing and per-version statistics; the request path
(upstream_body, predict, mirror, authorised, the 413) against a stand-in TorchServe on loopback (no JVM)."""
import asyncio
import base64
import io
import json
from contextlib import asynccontextmanager

import numpy as np
import pytest
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError

from faceparse.serve import router as router_module
from faceparse.serve.imaging import RequestError, label_png
from faceparse.serve.router import (FORWARD_HEADERS, MAX_BODY, MAX_LAT, Router, Stats, make_app, percentile,
                                   upstream_body)


class FixedDraws:
    """Stands in for the router's ``rng``: returns the given uniform draws in order."""

    def __init__(self, *draws: float):
        self.draws = list(draws)

    def random(self) -> float:
        return self.draws.pop(0)


def router(tmp_path, draws=(), **state) -> Router:
    r = Router(tmp_path, "http://127.0.0.1:9/", tmp_path / "keys.json")
    r.state = state
    r.rng = FixedDraws(*draws)
    return r


# --- percentile ------------------------------------------------------------------------------------------

def test_percentile_interpolates_linearly_between_order_statistics():
    v = [40, 10, 30, 20]                            # unsorted on purpose
    assert percentile(v, 0.0) == 10.0
    assert percentile(v, 0.5) == 25.0               # k = 1.5 → 20 + 0.5 · 10
    assert percentile(v, 0.95) == pytest.approx(38.5)   # k = 2.85 → 30 + 0.85 · 10
    assert percentile(v, 0.99) == pytest.approx(39.7)   # k = 2.97
    assert percentile(v, 1.0) == 40.0               # top: no element above to interpolate with
    assert percentile(v, 1 / 3) == pytest.approx(20.0)  # k = 1 exactly
    assert v == [40, 10, 30, 20]                    # the input is not sorted in place


def test_percentile_edge_cases():
    assert percentile([], 0.5) is None
    assert percentile([7], 0.95) == 7.0
    assert isinstance(percentile([1, 2], 0.5), float) and percentile([1, 2], 0.5) == 1.5
    assert percentile([5, 5, 9], 0.5) == 5.0


# --- Stats -----------------------------------------------------------------------------------------------

def test_stats_classifies_status_codes_at_the_boundaries():
    s = Stats()
    for status, ms in ((200, 10.0), (399, 30.0), (400, 99.0), (499, 99.0), (500, 99.0), (503, 99.0), (200, 20.0)):
        s.add(status, ms)
    assert s.n == 7
    assert s.errors == 2            # 500, 503
    assert s.client_errors == 2     # 400, 499
    assert s.codes == {"200": 2, "399": 1, "400": 1, "499": 1, "500": 1, "503": 1}
    assert list(s.lat) == [10.0, 30.0, 20.0]   # only answered (< 400) requests time the model


def test_stats_summary_exact():
    s = Stats()
    for ms in (10.0, 20.0, 30.0, 40.0):
        s.add(200, ms)
    s.add(404, 1.0)
    s.add(502, 1.0)
    assert s.summary() == {
        "n": 6, "errors": 1, "client_errors": 1, "error_rate": 1 / 6, "client_error_rate": 1 / 6,
        "codes": {"200": 4, "404": 1, "502": 1},
        "p50_ms": 25.0, "p95_ms": pytest.approx(38.5), "p99_ms": pytest.approx(39.7),
    }
    summary = s.summary()
    summary["codes"]["200"] = 0
    assert s.codes["200"] == 4      # the summary is a copy


def test_empty_stats_summary_has_no_rates():
    s = Stats()
    assert (s.n, s.errors, s.client_errors, s.codes, list(s.lat)) == (0, 0, 0, {}, [])
    assert s.summary() == {"n": 0, "errors": 0, "client_errors": 0, "error_rate": None, "client_error_rate": None,
                           "codes": {}, "p50_ms": None, "p95_ms": None, "p99_ms": None}


def test_stats_latency_window_is_bounded():
    s = Stats()
    assert s.lat.maxlen == MAX_LAT == 20000
    for i in range(MAX_LAT + 5):
        s.add(200, float(i))
    assert len(s.lat) == MAX_LAT and s.lat[0] == 5.0   # the oldest drop out
    assert s.n == MAX_LAT + 5


# --- Router.route ----------------------------------------------------------------------------------------

def test_route_threshold_is_strict(tmp_path):
    # a draw u goes to the canary when 100·u < percent
    r = router(tmp_path, draws=(0.2999, 0.3, 0.0, 0.9999), model="m", stable=1, canary=2, percent=30)
    assert r.route("m") == ("2", "canary")
    assert r.route("m") == ("1", "stable")       # 30 < 30 is false
    assert r.route("m") == ("2", "canary")
    assert r.route("m") == ("1", "stable")


def test_route_percent_given_as_text_or_missing(tmp_path):
    r = router(tmp_path, draws=(0.5, 0.5), model="m", stable="3", canary="4", percent="60")
    assert r.route("m") == ("4", "canary")
    r.state = {"model": "m", "stable": "3", "canary": "4", "percent": None}
    r.rng = FixedDraws()                          # no draw may be made: percent None means 0
    assert r.route("m") == ("3", "stable")
    r.state = {"model": "m", "stable": "3", "canary": "4"}
    assert r.route("m") == ("3", "stable")


def test_route_without_canary_or_at_zero_percent_never_draws(tmp_path):
    r = router(tmp_path, model="m", stable="1", canary=None, percent=50)
    assert r.route("m") == ("1", "stable")
    r.state = {"model": "m", "stable": "1", "canary": "2", "percent": 0}
    assert r.route("m") == ("1", "stable")
    r.state = {"model": "m", "stable": "1", "canary": "", "percent": 100}
    assert r.route("m") == ("1", "stable")


def test_route_fractional_percent(tmp_path):
    r = router(tmp_path, draws=(0.004, 0.006), model="m", stable="1", canary="2", percent=0.5)
    assert r.route("m") == ("2", "canary")       # 0.4 < 0.5: half a percent is still a canary share
    assert r.route("m") == ("1", "stable")


def test_route_full_percent_always_canary(tmp_path):
    r = router(tmp_path, draws=(0.999999, 0.0), model="m", stable="1", canary="2", percent=100)
    assert r.route("m") == ("2", "canary")
    assert r.route("m") == ("2", "canary")


def test_route_passes_through_other_models_and_an_unset_rollout(tmp_path):
    r = router(tmp_path, model="m", stable="1", canary="2", percent=100)
    assert r.route("other") == (None, None)
    r.state = {}
    assert r.route("m") == (None, None)
    r.state = {"model": "m", "stable": None, "canary": "2", "percent": 100}
    assert r.route("m") == (None, None)            # no stable version: nothing to route to
    r.state = {"model": "m", "stable": "", "canary": "2", "percent": 100}
    assert r.route("m") == (None, None)


# --- worker loss ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("answers, expected, tries", [
    ([507, 200], 200, 1),           # the worker died with the batch: sent again, answered
    ([502, 503, 200], 200, 2),      # connection dropped, then no worker yet, then answered
    ([507] * 50, 507, None),        # never back within the wait: the loss is what the client gets
])
def test_a_prediction_lost_to_its_worker_is_sent_again(tmp_path, monkeypatch, answers, expected, tries):
    import asyncio

    from faceparse.serve import router as router_module

    r = router(tmp_path)
    sent = []

    async def forward(path, headers, body, version):
        sent.append(path)
        status = answers[len(sent)]
        return status, b"", {}

    async def no_sleep(s):
        clock[0] += s

    clock = [0.0]
    monkeypatch.setattr(r, "forward", forward)
    monkeypatch.setattr(router_module.asyncio, "sleep", no_sleep)
    monkeypatch.setattr(router_module.time, "monotonic", lambda: clock[0])
    status, _, _ = asyncio.run(r.retry("/predictions/m", {}, b"x", None, (answers[0], b"", {})))
    assert status == expected
    assert r.retried == (tries if tries is not None else len(sent))
    assert clock[0] <= router_module.RETRY_WAIT_S           # within the client's wait


# --- the request path: upstream_body, predict, mirror, authorised, the 413 --------------------------------
#
# upstream_body against a stand-in request (its logic alone); predict, mirror and the 413 through the real
# aiohttp app (make_app) in front of a stand-in TorchServe that records what reaches it (loopback, no worker).


class FakeRequest:
    """What upstream_body reads of an aiohttp request: the Content-Type, the body, the parsed form."""

    def __init__(self, content_type: str, body: bytes = b"", form=None, error: Exception | None = None):
        self.content_type, self.body, self.form, self.error = content_type, body, form, error
        self.reads = 0

    async def read(self) -> bytes:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return self.body

    async def post(self):
        if self.error is not None:
            raise self.error
        return self.form


class Part:
    """A multipart file field as aiohttp gives it (``.file``)."""

    def __init__(self, data: bytes):
        self.file = io.BytesIO(data)


def body_of(request, headers=None):
    headers = {} if headers is None else headers
    return asyncio.run(upstream_body(request, headers)), headers


@pytest.mark.parametrize("ctype", ["image/jpeg", "image/png", "application/octet-stream", "text/plain",
                                   "application/x-www-form-urlencoded", "garbage/unknown", ""])
def test_upstream_body_forwards_any_raw_body_as_octet_stream(ctype):
    """TorchServe answers an urlencoded form with HTTP 500 before the handler runs: a raw body always goes
    on as application/octet-stream, whatever the client called it, and the client's header (any case) goes."""
    body, headers = body_of(FakeRequest(ctype, b"\xff\xd8 photo"),
                            {"content-type": ctype, "Content-Type": ctype, "X-Format": "json"})
    assert body == b"\xff\xd8 photo"
    assert headers == {"X-Format": "json", "Content-Type": "application/octet-stream"}


def test_upstream_body_keeps_json_as_json():
    body, headers = body_of(FakeRequest("application/json", b'{"instances": []}'), {"CONTENT-TYPE": "x"})
    assert (body, headers) == (b'{"instances": []}', {"Content-Type": "application/json"})


def test_upstream_body_unpacks_a_multipart_form():
    form = {"data": Part(b"jpeg bytes"), "resolution": "96", "format": "json", "detect": "false"}
    body, headers = body_of(FakeRequest("multipart/form-data", form=form), {"Content-Type": "multipart/form-data"})
    assert body == b"jpeg bytes"
    # resolution and format fields become headers (detect travels as a query parameter or header only)
    assert headers == {"Content-Type": "application/octet-stream", "X-Resolution": "96", "X-Format": "json"}


def test_upstream_body_lets_an_explicit_header_win_over_a_form_field():
    form = {"data": Part(b"x"), "resolution": "96", "format": "json"}
    _, headers = body_of(FakeRequest("multipart/form-data", form=form), {"x-resolution": "128"})
    assert headers == {"x-resolution": "128", "Content-Type": "application/octet-stream", "X-Format": "json"}
    _, headers = body_of(FakeRequest("multipart/form-data", form=form), {"X-FORMAT": "png"})
    assert headers == {"X-FORMAT": "png", "Content-Type": "application/octet-stream", "X-Resolution": "96"}


def test_upstream_body_option_fields_must_be_text():
    form = {"data": Part(b"x"), "resolution": Part(b"96"), "format": Part(b"json")}
    _, headers = body_of(FakeRequest("multipart/form-data", form=form))
    assert headers == {"Content-Type": "application/octet-stream"}


def test_upstream_body_image_field_order_data_body_file():
    mp = "multipart/form-data"
    assert body_of(FakeRequest(mp, form={"file": Part(b"3"), "body": Part(b"2"), "data": Part(b"1")}))[0] == b"1"
    assert body_of(FakeRequest(mp, form={"file": Part(b"3"), "body": Part(b"2")}))[0] == b"2"
    assert body_of(FakeRequest(mp, form={"file": Part(b"3"), "image": Part(b"4")}))[0] == b"3"


def test_upstream_body_reads_a_text_image_field_as_base64():
    mp = "multipart/form-data"
    assert body_of(FakeRequest(mp, form={"data": base64.b64encode(b"\x89PNG img").decode()}))[0] == b"\x89PNG img"
    assert body_of(FakeRequest(mp, form={"body": "data:image/png;base64," + base64.b64encode(b"ab").decode()}))[0] \
        == b"ab"
    with pytest.raises(RequestError, match="^text body is not an image") as e:
        body_of(FakeRequest(mp, form={"data": "@@@ not base64"}))
    assert e.value.status == 400


def test_upstream_body_refuses_a_form_without_an_image():
    with pytest.raises(ValueError, match=r"^multipart body has no image field: send the image in field 'data'$"):
        body_of(FakeRequest("multipart/form-data", form={"image": Part(b"x"), "format": "json"}))


def test_upstream_body_a_broken_form_is_the_clients_mistake():
    with pytest.raises(ValueError, match=r"^malformed multipart body: AssertionError$"):
        body_of(FakeRequest("multipart/form-data", error=AssertionError("boundary")))


def test_upstream_body_lets_aiohttps_413_through():
    """A form (or a raw body) over MAX_BODY: aiohttp's HTTPRequestEntityTooLarge is its answer, a 413 — not
    turned into a 400 'malformed multipart body' (a form's 413 was, before)."""
    for ctype in ("multipart/form-data", "image/jpeg", "application/json"):
        with pytest.raises(web.HTTPRequestEntityTooLarge):
            body_of(FakeRequest(ctype, error=web.HTTPRequestEntityTooLarge(max_size=10, actual_size=11)))


@pytest.mark.parametrize("ctype", ["image/jpeg", "application/json"])
def test_upstream_body_a_body_its_content_encoding_cannot_decode_is_a_400(ctype):
    """Content-Encoding: gzip over bytes that are not gzip: aiohttp's payload error (an HTTP 500 before)."""
    err = web.RequestPayloadError("Response payload is not completed")
    err.__cause__ = ContentEncodingError("Can not decode content-encoding: gzip")
    with pytest.raises(ValueError, match=r"^unreadable request body: Can not decode content-encoding: gzip$"):
        body_of(FakeRequest(ctype, error=err))
    with pytest.raises(ValueError, match=r"^unreadable request body: deflate$"):
        body_of(FakeRequest(ctype, error=ContentEncodingError("deflate")))
    with pytest.raises(ValueError, match=r"^unreadable request body: lost$"):
        body_of(FakeRequest(ctype, error=web.RequestPayloadError("lost")))
    with pytest.raises(ValueError, match=r"^unreadable request body: RequestPayloadError$"):
        body_of(FakeRequest(ctype, error=web.RequestPayloadError()))


# --- through the app ---------------------------------------------------------------------------------------

class Upstream:
    """A stand-in TorchServe inference API: records (path, headers, body) of each request and answers with
    ``answer(path, headers, body) -> (status, body, headers)``."""

    def __init__(self, answer=None, delay_s: float = 0.0):
        self.seen: list[tuple[str, dict, bytes]] = []
        self.inflight: list[dict] = []      # the router's in-flight counts as each request arrived
        self.router: Router | None = None
        self.delay_s = delay_s
        self.answer = answer or (lambda path, headers, body: (200, b"answer of " + path.encode(),
                                                              {"Content-Type": "image/png", "X-Model-Version": "1"}))

    async def handle(self, request):
        body = await request.read()
        self.seen.append((request.path, request.headers.copy(), body))
        self.inflight.append(dict(self.router.inflight) if self.router else {})
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status, data, headers = self.answer(request.path, request.headers, body)
        return web.Response(status=status, body=data, headers=headers)


@asynccontextmanager
async def serving(tmp_path, upstream: Upstream | None = None, state=None, draws=()):
    """(test client of the router app, the Router, the stand-in upstream)."""
    from aiohttp.test_utils import TestClient, TestServer

    up = upstream or Upstream()
    up_app = web.Application(client_max_size=64 * 1024 * 1024)
    up_app.router.add_post("/predictions/{tail:.*}", up.handle)
    async with TestServer(up_app, host="127.0.0.1") as up_server:
        r = Router(tmp_path, str(up_server.make_url("/")), tmp_path / "keys.json")
        r.state = dict(state or {})
        r.rng = FixedDraws(*draws)
        up.router = r
        async with TestClient(TestServer(make_app(r), host="127.0.0.1")) as client:
            yield client, r, up


async def settle(cond, timeout_s: float = 5.0) -> None:
    """Wait for a condition the router meets in the background (a mirrored request's agreement)."""
    for _ in range(int(timeout_s / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not settled")


def test_the_router_takes_a_body_of_max_body_and_answers_413_above(tmp_path, monkeypatch):
    """The router's own 413: a body over MAX_BODY never reaches TorchServe (a raw body, a form, a gzip-encoded
    body measured decoded); exactly MAX_BODY is forwarded. The limit is TorchServe's max_request_size."""
    import gzip

    from faceparse.serve import server

    assert MAX_BODY == server.MAX_BODY == 20 * 1024 * 1024
    monkeypatch.setattr(router_module, "MAX_BODY", 4096)

    async def main():
        async with serving(tmp_path) as (client, r, up):
            assert client.server.app._client_max_size == 4096
            ok = await client.post("/predictions/m", data=b"x" * 4096)
            assert ok.status == 200 and len(up.seen) == 1 and up.seen[0][2] == b"x" * 4096
            for kw in ({"data": b"x" * 4097},
                       {"data": {"data": io.BytesIO(b"x" * 5000)}},     # a multipart form
                       {"data": gzip.compress(b"x" * 5000), "headers": {"Content-Encoding": "gzip"}}):
                resp = await client.post("/predictions/m", **kw)
                assert resp.status == 413, kw.keys()
                assert "Maximum request body size 4096 exceeded" in await resp.text()
            assert len(up.seen) == 1 and r.total == 1      # none reached TorchServe or counted as a prediction

    asyncio.run(main())


def test_predict_forwards_only_what_torchserve_needs(tmp_path):
    async def main():
        async with serving(tmp_path) as (client, r, up):
            resp = await client.post("/predictions/m", data=b"img", headers={
                "Authorization": "Bearer k", "X-Resolution": "96", "X-Format": "json", "X-Detect": "false",
                "Accept": "image/png", "Cookie": "session=1", "X-Forwarded-For": "10.0.0.1",
                "Content-Type": "image/jpeg"})
            assert resp.status == 200 and await resp.read() == b"answer of /predictions/m"
            path, headers, body = up.seen[0]
            assert (path, body) == ("/predictions/m", b"img")
            for k in ("Authorization", "X-Resolution", "X-Format", "X-Detect", "Accept"):
                assert k in headers, k
            assert "Cookie" not in headers and "X-Forwarded-For" not in headers
            assert headers["Content-Type"] == "application/octet-stream"
            assert set(FORWARD_HEADERS) == {"authorization", "content-type", "x-resolution", "x-format", "x-detect",
                                            "accept"}

    asyncio.run(main())


def test_predict_carries_query_options_as_headers_an_explicit_header_wins(tmp_path):
    async def main():
        async with serving(tmp_path) as (client, r, up):
            await client.post("/predictions/m?resolution=96&format=overlay&detect=false&other=1", data=b"i")
            h = up.seen[-1][1]
            assert (h["X-Resolution"], h["X-Format"], h["X-Detect"]) == ("96", "overlay", "false")
            assert "X-Other" not in h
            await client.post("/predictions/m?resolution=96&format=json", data=b"i",
                              headers={"x-resolution": "128"})
            h = up.seen[-1][1]
            assert h.getall("X-Resolution") == ["128"] and h["X-Format"] == "json"

    asyncio.run(main())


def test_predict_routes_the_rollout_model_and_marks_the_arm(tmp_path):
    state = {"model": "m", "stable": "1", "canary": "2", "percent": 50}

    async def main():
        # each answered routed request draws twice: the split, then the mirror (here never: no mirror fraction)
        async with serving(tmp_path, state=state, draws=(0.9, 0.0, 0.1, 0.0)) as (client, r, up):
            a = await client.post("/predictions/m", data=b"i")
            b = await client.post("/predictions/m", data=b"i")
            c = await client.post("/predictions/m/7", data=b"i")        # an explicit version passes through
            d = await client.post("/predictions/other", data=b"i")      # another model too
            assert [s[0] for s in up.seen] == ["/predictions/m/1", "/predictions/m/2", "/predictions/m/7",
                                               "/predictions/other"]
            assert (a.headers["X-Canary-Arm"], b.headers["X-Canary-Arm"]) == ("stable", "canary")
            assert "X-Canary-Arm" not in c.headers and "X-Canary-Arm" not in d.headers
            assert sorted(r.stats) == ["1", "2"] and r.stats["1"].n == r.stats["2"].n == 1   # only routed ones
            assert r.total == 4 and r.inflight == {"1": 0, "2": 0, "7": 0} and r.retried == 0
            assert up.inflight[:3] == [{"1": 1}, {"1": 0, "2": 1}, {"1": 0, "2": 0, "7": 1}]   # counted while sent

    asyncio.run(main())


def test_predict_passes_the_answer_through_with_its_own_headers_only(tmp_path):
    up = Upstream(lambda p, h, b: (415, b'{"code": 415, "message": "gif"}', {
        "Content-Type": "application/json", "X-Model-Version": "3", "X-Request-Id": "abc", "X-Secret": "s",
        "Set-Cookie": "a=b"}))

    async def main():
        async with serving(tmp_path, up, state={"model": "m", "stable": "3"}) as (client, r, _):
            resp = await client.post("/predictions/m", data=b"GIF89a")
            assert resp.status == 415 and await resp.json() == {"code": 415, "message": "gif"}
            assert resp.headers["Content-Type"] == "application/json"
            assert (resp.headers["X-Model-Version"], resp.headers["X-Request-Id"]) == ("3", "abc")
            assert "X-Secret" not in resp.headers and "Set-Cookie" not in resp.headers
            s = r.stats["3"]
            assert (s.n, s.client_errors, s.errors, s.codes) == (1, 1, 0, {"415": 1})

    asyncio.run(main())


def test_predict_answers_a_client_mistake_400_without_asking_torchserve(tmp_path):
    async def main():
        async with serving(tmp_path, state={"model": "m", "stable": "1"}) as (client, r, up):
            resp = await client.post("/predictions/m", data=b"no boundary",
                                     headers={"Content-Type": "multipart/form-data"})
            assert resp.status == 400
            assert await resp.json() == {"code": 400, "type": "Bad Request",
                                         "message": "malformed multipart body: ValueError"}
            resp = await client.post("/predictions/m", data=b"not gzip", headers={"Content-Encoding": "gzip"})
            assert resp.status == 400
            js = await resp.json()
            assert (js["code"], js["type"]) == (400, "Bad Request")
            assert js["message"] == "unreadable request body: Can not decode content-encoding: gzip"
            assert up.seen == [] and r.total == 0 and r.stats == {}

    asyncio.run(main())


def test_predict_reroutes_once_when_the_routed_version_went_away(tmp_path):
    """A 404 for the routed version (promote / rollback unregistered it meanwhile): routed again, once."""
    up = Upstream(lambda p, h, b: (404, b"gone", {}) if p.endswith("/2") else (200, b"ok", {}))

    async def main():
        async with serving(tmp_path, up, state={"model": "m", "stable": "1", "canary": "2", "percent": 50},
                           draws=(0.1, 0.9, 0.0)) as (client, r, _):
            resp = await client.post("/predictions/m", data=b"i", headers={"X-Format": "json"})
            assert resp.status == 200 and resp.headers["X-Canary-Arm"] == "stable"
            assert [s[0] for s in up.seen] == ["/predictions/m/2", "/predictions/m/1"]
            assert [s[2] for s in up.seen] == [b"i", b"i"] and up.seen[1][1]["X-Format"] == "json"
            assert up.inflight == [{"2": 1}, {"2": 0, "1": 1}]
            assert sorted(r.stats) == ["1"]
        up.seen.clear()
        async with serving(tmp_path, up, state={"model": "m", "stable": "2", "canary": "2", "percent": 50},
                           draws=(0.1, 0.1)) as (client, r, _):
            resp = await client.post("/predictions/m", data=b"i")   # routed to the same version again: no resend
            assert resp.status == 404 and [s[0] for s in up.seen] == ["/predictions/m/2"]
        up.seen.clear()
        async with serving(tmp_path, up) as (client, r, _):
            resp = await client.post("/predictions/m/2", data=b"i")  # explicit: the client's 404
            assert resp.status == 404 and len(up.seen) == 1

    asyncio.run(main())


def test_predict_answers_502_when_torchserve_is_unreachable(tmp_path, monkeypatch):
    monkeypatch.setattr(router_module, "RETRY_WAIT_S", 0.3)

    async def main():
        async with serving(tmp_path, state={"model": "m", "stable": "1"}) as (client, r, up):
            r.upstream = "http://127.0.0.1:9"                       # nothing listens on the discard port
            resp = await client.post("/predictions/m", data=b"i")
            assert resp.status == 502
            js = await resp.json()
            assert js["code"] == 502 and js["message"].startswith("upstream: Client")
            assert r.retried >= 1 and r.stats["1"].errors == 1

    asyncio.run(main())


def test_retry_backs_off_doubling_and_stops_before_the_deadline(tmp_path, monkeypatch):
    r = router(tmp_path)
    clock, pauses, sent = [0.0], [], []

    async def forward(path, headers, body, version):
        sent.append((path, headers, body, version))
        return 507, b"", {}

    async def sleep(s):
        pauses.append(s)
        clock[0] += s

    monkeypatch.setattr(r, "forward", forward)
    monkeypatch.setattr(router_module.asyncio, "sleep", sleep)
    monkeypatch.setattr(router_module.time, "monotonic", lambda: clock[0])
    asyncio.run(r.retry("/p", {"h": "1"}, b"x", "3", (503, b"", {})))
    assert pauses == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]            # 15.75 s; the next 16 s pause would pass 20 s
    assert sent == [("/p", {"h": "1"}, b"x", "3")] * 6 and r.retried == 6
    monkeypatch.setattr(router_module, "RETRY_WAIT_S", 0.75)
    pauses.clear()
    clock[0] = 0.0
    asyncio.run(r.retry("/p", {}, b"x", None, (502, b"", {})))
    assert pauses == [0.25]                                     # 0.25 + 0.5 reaches the deadline: no second try
    asyncio.run(r.retry("/p", {}, b"x", None, (500, b"", {})))  # not a worker loss: not sent again
    assert pauses == [0.25]


# --- mirror ---------------------------------------------------------------------------------------------

X = np.array([[0, 1], [1, 1]], np.uint8)
Y = np.array([[0, 1], [0, 1]], np.uint8)
IOU_XY = (0.5 + 2 / 3) / 2


def by_version(**answers):
    """An upstream answering /predictions/m/<v> with answers[v] (bytes or a (status, bytes) pair)."""
    def answer(path, headers, body):
        a = answers[path.rsplit("/", 1)[1]]
        status, data = a if isinstance(a, tuple) else (200, a)
        return status, data, {"Content-Type": "image/png"}
    return Upstream(answer)


MIRRORED = {"model": "m", "stable": "1", "canary": "2", "percent": 0, "mirror": 1.0, "stage": "parser"}


def test_mirror_compares_the_live_answer_with_the_other_versions(tmp_path):
    async def main():
        async with serving(tmp_path, by_version(**{"1": label_png(X), "2": label_png(Y)}), state=MIRRORED,
                           draws=(0.999,)) as (client, r, up):
            resp = await client.post("/predictions/m", data=b"img", headers={"Authorization": "Bearer k",
                                                                              "x-format": "PNG "})
            assert resp.status == 200 and await resp.read() == label_png(X)
            await settle(lambda: r.agreement)
            assert r.agreement == [{"live": "1", "other": "2", "agreement": pytest.approx(IOU_XY), "status": 200}]
            # the live answer was a label map already: only the other version is asked, in the mirror format
            assert [s[0] for s in up.seen] == ["/predictions/m/1", "/predictions/m/2"]
            mirrored = up.seen[1][1]
            assert mirrored.getall("X-Format") == ["png"] and mirrored["Authorization"] == "Bearer k"
            assert up.seen[1][2] == b"img" and up.inflight[1] == {"1": 0, "2": 1}   # the shadow is in flight too
            assert r.snapshot()["agreement"] == {"n": 1, "failed": 0, "dropped": 0, "mean": pytest.approx(IOU_XY),
                                                 "min": pytest.approx(IOU_XY)}

    asyncio.run(main())


def test_mirror_asks_both_versions_when_the_live_answer_is_another_format(tmp_path):
    async def main():
        async with serving(tmp_path, by_version(**{"1": label_png(X), "2": label_png(Y)}),
                           state={**MIRRORED, "percent": 100}, draws=(0.0, 0.5)) as (client, r, up):
            resp = await client.post("/predictions/m?format=json", data=b"img")
            assert resp.status == 200 and resp.headers["X-Canary-Arm"] == "canary"
            await settle(lambda: r.agreement)
            # live = the canary (2), other = stable (1); the live answer (json) is asked again as png
            assert [s[0] for s in up.seen] == ["/predictions/m/2", "/predictions/m/1", "/predictions/m/2"]
            assert [s[1]["X-Format"] for s in up.seen] == ["json", "png", "png"]
            assert [s[2] for s in up.seen] == [b"img"] * 3
            assert up.inflight[1:] == [{"2": 0, "1": 1}, {"2": 1, "1": 0}]
            assert r.agreement == [{"live": "2", "other": "1", "agreement": pytest.approx(IOU_XY), "status": 200}]

    asyncio.run(main())


def test_mirror_records_a_failed_other_version_and_skips_a_failed_live_one(tmp_path):
    async def main():
        async with serving(tmp_path, by_version(**{"1": label_png(X), "2": (503, b"no worker")}), state=MIRRORED,
                           draws=(0.5,)) as (client, r, up):
            await client.post("/predictions/m", data=b"img")
            await settle(lambda: r.agreement)
            assert r.agreement == [{"live": "1", "other": "2", "agreement": None, "status": 503}]
            assert r.snapshot()["agreement"]["failed"] == 1
            # the live version failing its png answer: no sample at all
            r.agreement.clear()
            await r.mirror("m", {}, b"img", "2", "1", None, r.generation, router_module.codec_for("parser"))
            assert r.agreement == []

    asyncio.run(main())


def test_mirror_only_when_drawn_and_never_for_a_failed_or_unrouted_request(tmp_path):
    async def main():
        async with serving(tmp_path, by_version(**{"1": label_png(X), "2": label_png(Y)}),
                           state={**MIRRORED, "mirror": 0.25}, draws=(0.25, 0.2499)) as (client, r, up):
            await client.post("/predictions/m", data=b"img")         # 0.25 < 0.25 is false: not mirrored
            await client.post("/predictions/m", data=b"img")         # drawn
            await settle(lambda: r.agreement)
            assert len(up.seen) == 3 and len(r.agreement) == 1
        up = by_version(**{"1": (400, b"bad"), "2": label_png(Y), "7": label_png(X)})
        async with serving(tmp_path, up, state=MIRRORED) as (client, r, _):
            await client.post("/predictions/m", data=b"img")         # a 4xx is not mirrored (no draw made)
            await client.post("/predictions/m/7", data=b"img")       # nor an explicit version
            await asyncio.sleep(0.1)
            assert len(up.seen) == 2 and r.agreement == []
        async with serving(tmp_path, up, state={**MIRRORED, "canary": None}) as (client, r, _):
            await client.post("/predictions/m", data=b"img")         # no canary: nothing to compare with
            await asyncio.sleep(0.1)
            assert len(up.seen) == 3 and r.agreement == []

    asyncio.run(main())


def test_mirror_drops_when_busy_and_forgets_an_old_generation(tmp_path, monkeypatch):
    async def main():
        async with serving(tmp_path, by_version(**{"1": label_png(X), "2": label_png(Y)}), state=MIRRORED) \
                as (client, r, up):
            codec = router_module.codec_for("parser")
            async with r.mirror_sem, r.mirror_sem:                   # both slots held
                await r.mirror("m", {}, b"img", "1", "2", label_png(X), r.generation, codec)
                await r.mirror("m", {}, b"img", "1", "2", label_png(X), r.generation, codec)
            assert r.mirror_dropped == 2 and up.seen == [] and r.agreement == []
            await r.mirror("m", {}, b"img", "1", "2", label_png(X), r.generation - 1, codec)   # stale
            assert len(up.seen) == 1 and r.agreement == []
            monkeypatch.setattr(router_module, "MAX_LAT", 2)
            for _ in range(3):
                await r.mirror("m", {}, b"img", "1", "2", label_png(X), r.generation, codec)
            assert len(r.agreement) == 2                              # the newest MAX_LAT samples are kept
            assert r.snapshot()["agreement"]["dropped"] == 2

    asyncio.run(main())


def test_mirror_compares_with_the_rollout_stages_codec(tmp_path):
    """A landmark canary: the shadow answers are JSON points (the landmark codec's mirror format), compared as
    1 − NME — not as label maps (the parser's codec, the default when no stage is recorded)."""
    a = np.zeros((68, 2))
    a[36], a[45] = [10.0, 50.0], [90.0, 50.0]
    b = a + [4.0, 0.0]
    up = Upstream(lambda path, h, body: (200, json.dumps({"points": (a if path.endswith("/1") else b).tolist()})
                                         .encode(), {"Content-Type": "application/json"}))

    async def main():
        async with serving(tmp_path, up, state={**MIRRORED, "stage": "landmarks"}, draws=(0.5,)) as (client, r, _):
            await client.post("/predictions/m", data=b"img")
            await settle(lambda: r.agreement)
            assert [s[1]["X-Format"] for s in up.seen[1:]] == ["json"]
            assert r.agreement[0]["agreement"] == pytest.approx(0.95)

    asyncio.run(main())


def test_predict_sends_a_prediction_lost_to_its_worker_again_as_it_was(tmp_path):
    tries = []

    def answer(path, headers, body):
        tries.append(path)
        return (507, b"worker died", {}) if len(tries) == 1 else (200, b"ok", {"Content-Type": "image/png"})

    async def main():
        async with serving(tmp_path, Upstream(answer), state={"model": "m", "stable": "1"}, draws=(0.0,)) \
                as (client, r, up):
            resp = await client.post("/predictions/m?format=json", data=b"img", headers={"Authorization": "Bearer k"})
            assert resp.status == 200 and await resp.read() == b"ok" and r.retried == 1
            assert [s[0] for s in up.seen] == ["/predictions/m/1"] * 2 and [s[2] for s in up.seen] == [b"img"] * 2
            assert [(s[1]["X-Format"], s[1]["Authorization"]) for s in up.seen] == [("json", "Bearer k")] * 2
            assert up.inflight == [{"1": 1}, {"1": 1}]
            assert r.stats["1"].codes == {"200": 1}          # the client's one request, answered

    asyncio.run(main())


def test_predict_times_the_answer_in_milliseconds(tmp_path):
    async def main():
        async with serving(tmp_path, Upstream(delay_s=0.05), state={"model": "m", "stable": "1"}) \
                as (client, r, up):
            await client.post("/predictions/m", data=b"img")
            assert 50.0 <= r.stats["1"].lat[0] < 5000.0

    asyncio.run(main())


# --- the agreement the mirror computes, per served stage (the stages' codecs) -----------------------------

def test_recon3d_agreement_is_one_minus_the_nme_of_the_projected_landmarks():
    from faceparse.serve.codecs import codec_for

    a = np.zeros((68, 2))
    a[36], a[45] = [10.0, 50.0], [90.0, 50.0]          # inter-ocular distance 80
    b = a.copy()
    b[:, 1] += 8.0                                      # every point 8 px off: NME 0.1
    answer = lambda pts, key="landmarks": json.dumps({key: pts.tolist(), "identity": [0.0]}).encode()  # noqa: E731
    rc = codec_for("recon3d")
    assert rc.agreement(answer(a), answer(b)) == pytest.approx(0.9)
    assert rc.agreement(answer(b), answer(a)) == pytest.approx(0.9)
    assert rc.agreement(answer(a), answer(a)) == 1.0
    assert rc.agreement(answer(a), answer(a + [0.0, 400.0])) == 0.0          # NME 5: none, not negative
    assert rc.agreement(answer(a, "points"), answer(b, "points")) is None    # a landmark answer is not this one
    assert rc.agreement(b"v 0 0 0", answer(a)) is None                       # an OBJ answer is not compared
    assert (rc.formats[0], rc.mirror_format) == ("json", "json")


def test_fisn_agreement_reads_any_png_mode_as_rgb():
    from PIL import Image

    from faceparse.serve.codecs import codec_for
    from faceparse.serve.imaging import encode_png

    grey = np.full((4, 4), 100, np.uint8)
    fisn = codec_for("fisn")
    assert fisn.agreement(encode_png(grey), encode_png(np.dstack([grey] * 3))) == 1.0
    rgba = io.BytesIO()
    Image.fromarray(np.dstack([grey] * 3 + [np.full((4, 4), 255, np.uint8)])).save(rgba, "PNG")
    assert fisn.agreement(rgba.getvalue(), encode_png(np.dstack([grey] * 3))) == 1.0
    # sizes that numpy would broadcast are still different answers
    assert fisn.agreement(encode_png(np.dstack([grey] * 3)), encode_png(np.full((4, 1, 3), 100, np.uint8))) is None
    white = np.full((4, 4, 3), 255, np.uint8)
    assert fisn.agreement(encode_png(np.zeros((4, 4, 3), np.uint8)), encode_png(white)) == 0.0   # uint8: no wrap
    assert fisn.agreement(encode_png(white), encode_png(np.zeros((4, 4, 3), np.uint8))) == 0.0


# --- authorised / stats ------------------------------------------------------------------------------

class Headers:
    def __init__(self, **h):
        self.headers = h


def test_authorised_takes_the_inference_or_management_key_as_a_bearer_token(tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"Inference": {"key": "inf"}, "management": {"key": "mgt"}, "API": {"key": "api"}}))
    r = Router(tmp_path, "http://127.0.0.1:9", keys)
    ok = [Headers(Authorization="Bearer inf"), Headers(Authorization="bearer mgt"),
          Headers(Authorization="BEARER   inf  ")]
    refused = [Headers(), Headers(Authorization="Bearer api"), Headers(Authorization="inf"),
               Headers(Authorization="Bearer "), Headers(Authorization="Bearer infx"),
               Headers(Authorization="Basic inf"), Headers(Authorization="Bearerinf"),
               Headers(Authorization="Digest inf")]    # 7 characters before the key, but not "Bearer "
    assert [r.authorised(h) for h in ok] == [True] * len(ok)
    assert [r.authorised(h) for h in refused] == [False] * len(refused)
    assert r.valid_keys() == {"inf", "mgt"}


def test_a_header_that_is_no_bearer_token_matches_no_key(tmp_path):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"inference": {"key": "XXXX"}}))
    r = Router(tmp_path, "http://127.0.0.1:9", keys)
    assert r.authorised(Headers(Authorization="Bearer XXXX"))
    assert not r.authorised(Headers(Authorization="Basic XXXX")) and not r.authorised(Headers())


def test_valid_keys_are_read_again_only_when_the_key_file_changes(tmp_path):
    import os

    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"inference": {"key": "a"}}))
    os.utime(keys, ns=(1, 10**18))
    r = Router(tmp_path, "http://127.0.0.1:9", keys)
    assert r.valid_keys() == {"a"}
    keys.write_text(json.dumps({"inference": {"key": "b"}}))
    os.utime(keys, ns=(1, 10**18))                       # same mtime: the cached keys
    assert r.valid_keys() == {"a"}
    os.utime(keys, ns=(1, 10**18 + 1))
    assert r.valid_keys() == {"b"}


def test_valid_keys_follow_the_key_file(tmp_path):
    import os

    keys = tmp_path / "keys.json"
    r = Router(tmp_path, "http://127.0.0.1:9", keys)
    assert r.valid_keys() == set() and not r.authorised(Headers(Authorization="Bearer a"))    # no file yet
    keys.write_text(json.dumps({"inference": {"key": "a"}, "management": {"key": "b"}}))
    assert r.valid_keys() == {"a", "b"}
    keys.write_text("{torn")
    os.utime(keys, ns=(1, 10**18))
    assert r.valid_keys() == {"a", "b"}                  # a torn write: the last good keys
    keys.write_text(json.dumps({"inference": {"key": "c"}}))
    os.utime(keys, ns=(1, 2 * 10**18))
    assert r.valid_keys() == {"c"}                       # renewed keys are picked up
    keys.unlink()
    assert r.valid_keys() == set()


def test_stats_need_a_key_healthz_does_not(tmp_path):
    async def main():
        async with serving(tmp_path) as (client, r, up):
            (tmp_path / "keys.json").write_text(json.dumps({"inference": {"key": "k"}}))
            resp = await client.get("/-/stats")
            assert resp.status == 401 and "bearer token required" in (await resp.json())["message"]
            resp = await client.get("/-/stats", headers={"Authorization": "Bearer k"})
            assert resp.status == 200 and (await resp.json())["total_requests"] == 0
            resp = await client.get("/-/healthz")
            assert resp.status == 200 and (await resp.json())["ok"] is True

    asyncio.run(main())


# --- the request bytes the router and the handler read (serve/imaging.py: payload_bytes, decode_image) ------

def _image_bytes(size, mode="RGB", fmt="PNG", colour=0) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, fmt)
    return buf.getvalue()


def test_payload_bytes_takes_bytes_as_they_are_and_text_as_base64():
    from faceparse.serve.imaging import payload_bytes

    assert payload_bytes(b"\xff\xd8") == b"\xff\xd8"
    assert payload_bytes(bytearray(b"ab")) == b"ab" and type(payload_bytes(bytearray(b"ab"))) is bytes
    assert payload_bytes(memoryview(b"cd")) == b"cd" and type(payload_bytes(memoryview(b"cd"))) is bytes
    enc = base64.b64encode(b"\x89PNG\r\n").decode()
    assert payload_bytes(enc) == b"\x89PNG\r\n"
    assert payload_bytes(f"  {enc}\n") == b"\x89PNG\r\n"                     # padded text
    assert payload_bytes({"b64": enc}) == b"\x89PNG\r\n"                     # KServe v1 {"b64": ...}
    assert payload_bytes({"b64": b"raw"}) == b"raw"
    assert payload_bytes(f"data:image/png;base64,{enc}") == b"\x89PNG\r\n"    # a data URL
    assert payload_bytes("data:,") == b""
    with pytest.raises(RequestError):
        payload_bytes("data:text/plain;base64,QUJD,REVG")                   # only the first comma ends the header
    assert payload_bytes("") == b""                                           # empty: decode_image refuses it


def test_parse_options_detect_comes_from_the_query_or_form_then_the_x_detect_header():
    """X-Detect travels through the router (a query parameter becomes the header): off for aligned crops."""
    from faceparse.serve.imaging import parse_options

    assert parse_options({}).detect is True and parse_options({}, default_detect=False).detect is False
    assert parse_options({"detect": "false"}).detect is False
    assert parse_options({}, {"X-Detect": "No"}).detect is False
    assert parse_options({}, {"x-detect": "off"}, default_detect=True).detect is False
    assert parse_options({}, {"X-DETECT": "1"}, default_detect=False).detect is True
    assert parse_options({"detect": "yes"}, {"X-Detect": "false"}).detect is True        # the value wins
    assert parse_options({"detect": ""}, {"X-Detect": "false"}).detect is False          # empty: the header
    with pytest.raises(RequestError) as e:
        parse_options({}, {"X-Detect": "maybe"})
    assert (e.value.status, e.value.message) == (400, "detect must be true or false, got 'maybe'")


@pytest.mark.parametrize("value, message", [
    ("@@@", "text body is not an image: send JPEG/PNG bytes (raw body or multipart field 'data'), or base64 "
            "inside KServe v1 JSON"),
    ("abc", "text body is not an image: send JPEG/PNG bytes (raw body or multipart field 'data'), or base64 "
            "inside KServe v1 JSON"),                                       # bad padding
    ("data:image/png;base64", "text body is not an image: send JPEG/PNG bytes (raw body or multipart field "
                              "'data'), or base64 inside KServe v1 JSON"),  # no comma: not a data URL
    (3, "unsupported request body of type int: send JPEG/PNG bytes"),
    (None, "unsupported request body of type NoneType: send JPEG/PNG bytes"),
    ({"data": "x"}, "unsupported request body of type dict: send JPEG/PNG bytes"),
    ([b"x"], "unsupported request body of type list: send JPEG/PNG bytes"),
])
def test_payload_bytes_refuses_what_is_not_an_image_payload(value, message):
    from faceparse.serve.imaging import payload_bytes

    with pytest.raises(RequestError) as e:
        payload_bytes(value)
    assert (e.value.status, e.value.message) == (400, message)


def test_decode_image_gives_rgb_and_takes_jpeg_and_png():
    from faceparse.serve.imaging import decode_image

    for data in (_image_bytes((20, 16), fmt="JPEG"), _image_bytes((20, 16)), _image_bytes((16, 20), "L"),
                 _image_bytes((16, 16), "RGBA", colour=(0, 0, 0, 0))):
        img = decode_image(data)
        assert img.mode == "RGB" and min(img.size) == 16
    assert decode_image(_image_bytes((16, 16), "RGBA", colour=(0, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("data, kw, status, message", [
    (b"", {}, 400, "empty, not an image (send JPEG or PNG bytes)"),
    (b"\x00" * 64, {}, 400, "unreadable image (not a recognisable image format)"),
    (b"GIF89a" + b"\x00" * 64, {}, 415, "image format GIF is not accepted: send JPEG or PNG"),
    ("bmp", {}, 415, "image format BMP is not accepted: send JPEG or PNG"),
    ("15x16", {}, 400, "image is 15×16; each side must be at least 16 pixels"),
    ("64x64", {"max_pixels": 4095}, 413, "image has 64×64 = 4096 pixels; the limit is 4095"),
    ("bomb", {}, 413, "image has 8000×5001 = 40008000 pixels; the limit is 40000000"),
])
def test_decode_image_refusals_name_the_problem_without_a_prefix(data, kw, status, message):
    from faceparse.serve.imaging import DEFAULT_MAX_PIXELS, decode_image

    assert DEFAULT_MAX_PIXELS == 40_000_000
    data = {"bmp": lambda: _image_bytes((32, 32), fmt="BMP"), "15x16": lambda: _image_bytes((15, 16)),
            "64x64": lambda: _image_bytes((64, 64)), "bomb": lambda: _image_bytes((8000, 5001), "1")}.get(
        data, lambda: data)()
    with pytest.raises(RequestError) as e:
        decode_image(data, **kw)
    assert (e.value.status, e.value.message) == (status, message)


def test_decode_image_limits_are_inclusive_and_truncation_is_a_400():
    from faceparse.serve.imaging import decode_image

    assert decode_image(_image_bytes((64, 64)), max_pixels=4096).size == (64, 64)
    assert decode_image(_image_bytes((16, 300))).size == (16, 300)
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    from PIL import Image

    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    with pytest.raises(RequestError) as e:
        decode_image(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert e.value.status == 400 and e.value.message.startswith("unreadable image (corrupt or truncated: ")


# --- rollout.auto: the steps, the waits and the decision (server calls stood in for) -----------------------

class AutoWorld:
    """Stands in for what ``rollout.auto`` calls: the analyses it gets, in order; a clock that only the
    polls advance; records of every call."""

    def __init__(self, monkeypatch, verdicts, start_error=None):
        from faceparse.serve import rollout

        self.verdicts, self.clock, self.calls, self.logs = list(verdicts), [0.0], [], []
        self.start_error = start_error
        self.params = None

        def mine(params, run_dir):
            assert params is self.params and run_dir == "rd"      # the caller's params and server, every call

        def start_rollout(params, model, percent=None, version=None, run_dir=None):
            mine(params, run_dir)
            self.calls.append(("start", model, percent, version, run_dir))
            if self.start_error:
                raise self.start_error
            return {"model": "fp", "canary": "2", "stable": "1"}

        def analyse(params, run_dir=None):
            mine(params, run_dir)
            self.calls.append(("analyse", self.clock[0]))
            verdict, failures, waiting = self.verdicts.pop(0)
            return {"verdict": verdict, "failures": failures, "waiting": waiting, "agreement": {"mean": 0.9},
                    "stable": {"n": 40}, "canary": {"n": 12, "errors": 1}}

        def sleep(s):
            self.calls.append(("sleep", s))
            self.clock[0] += s

        monkeypatch.setattr(rollout, "start_rollout", start_rollout)
        monkeypatch.setattr(rollout, "analyse", analyse)
        monkeypatch.setattr(rollout, "set_percent", lambda params, pct, run_dir=None: (
            mine(params, run_dir), self.calls.append(("percent", pct, run_dir))))
        monkeypatch.setattr(rollout, "rollback", lambda params, run_dir=None, reason="manual": (
            mine(params, run_dir), self.calls.append(("rollback", reason)))
            and {"rolled_back": "2", "reason": reason})
        monkeypatch.setattr(rollout, "promote", lambda params, run_dir=None: (
            mine(params, run_dir), self.calls.append(("promote",))) and {"promoted": "2", "retired": "1"})
        monkeypatch.setattr(rollout.time, "monotonic", lambda: self.clock[0])
        monkeypatch.setattr(rollout.time, "sleep", sleep)

    def run(self, steps=(10, 50), window_s=2, poll_s=1, **ro):
        from faceparse.serve.rollout import auto

        self.params = {"serve": {"rollout": {"steps": list(steps), "window_s": window_s, "poll_s": poll_s, **ro}}}
        return auto(self.params, "bundle-dir", run_dir="rd", version="v9", log=self.logs.append)

    def kinds(self):
        return [c[0] for c in self.calls]


PROMOTE, WAIT = ("promote", [], []), ("wait", [], ["stable has 3/30 requests", "0/5 mirrored requests compared"])


def test_auto_promotes_when_every_step_passes(monkeypatch):
    w = AutoWorld(monkeypatch, [PROMOTE, PROMOTE])
    out = w.run()
    assert w.calls == [("start", "bundle-dir", 10.0, "v9", "rd"), ("analyse", 0.0), ("percent", 50.0, "rd"),
                       ("analyse", 0.0), ("promote",)]
    assert out["decision"] == "promoted" and len(out["analyses"]) == 2
    assert out["start"] == {"model": "fp", "canary": "2", "stable": "1"}
    assert out["promote"] == {"promoted": "2", "retired": "1"}
    assert w.logs == ["canary fp v2 at 10% beside v1",
                      "  10%: promote stable n=40 canary n=12 errors=1 agreement=0.9",
                      "step 2/2: canary at 50%",
                      "  50%: promote stable n=40 canary n=12 errors=1 agreement=0.9",
                      "promoted v2 (retired v1)"]


def test_auto_polls_until_the_window_closes_then_rolls_back_for_want_of_data(monkeypatch):
    w = AutoWorld(monkeypatch, [WAIT] * 4)
    out = w.run(window_s=2, poll_s=1)
    # polls at t = 0, 1, 2 (the deadline itself still waits: strictly after it ends the step), 3
    assert [c for c in w.calls if c[0] in ("analyse", "sleep")] == [
        ("analyse", 0.0), ("sleep", 1.0), ("analyse", 1.0), ("sleep", 1.0), ("analyse", 2.0), ("sleep", 1.0),
        ("analyse", 3.0)]
    reason = "not enough data within 2 s: stable has 3/30 requests; 0/5 mirrored requests compared"
    assert w.calls[-1] == ("rollback", reason) and "promote" not in w.kinds()
    assert out == {"decision": "rolled-back", "reason": reason, "analyses": out["analyses"],
                   "start": {"model": "fp", "canary": "2", "stable": "1"},
                   "rollback": {"rolled_back": "2", "reason": reason}}
    assert len(out["analyses"]) == 1 and out["analyses"][0]["verdict"] == "wait"
    assert w.logs[-1] == f"rolled back v2: {reason}"


def test_auto_moves_on_as_soon_as_a_step_has_its_data(monkeypatch):
    w = AutoWorld(monkeypatch, [WAIT, PROMOTE, PROMOTE])
    assert w.run(window_s=30, poll_s=2.5)["decision"] == "promoted"
    assert w.kinds() == ["start", "analyse", "sleep", "analyse", "percent", "analyse", "promote"]
    assert ("sleep", 2.5) in w.calls


def test_auto_rolls_back_on_a_failing_step_naming_every_failure(monkeypatch):
    w = AutoWorld(monkeypatch, [PROMOTE, ("rollback", ["canary error rate 5.0% > 1.0% (3/60)", "agreement low"],
                                          ["ignored while failing"])])
    out = w.run(steps=(5, 25, 100))
    reason = "canary error rate 5.0% > 1.0% (3/60); agreement low"
    assert w.kinds() == ["start", "analyse", "percent", "analyse", "rollback"]
    assert w.calls[2] == ("percent", 25.0, "rd") and w.calls[-1] == ("rollback", reason)
    assert out["decision"] == "rolled-back" and out["reason"] == reason and len(out["analyses"]) == 2
    assert "step 2/3: canary at 25%" in w.logs


def test_auto_without_steps_uses_the_single_percent(monkeypatch):
    w = AutoWorld(monkeypatch, [PROMOTE])
    assert w.run(steps=(), percent=30)["decision"] == "promoted"
    assert w.calls[0] == ("start", "bundle-dir", 30.0, "v9", "rd") and "percent" not in w.kinds()


def test_auto_a_challenger_torchserve_refuses_is_rolled_back_without_a_canary(monkeypatch):
    from faceparse.serve.client import ServeError

    w = AutoWorld(monkeypatch, [], start_error=ServeError("registering v2 failed: worker died"))
    out = w.run()
    assert out == {"decision": "rolled-back", "reason": "registering v2 failed: worker died", "analyses": [],
                   "start": None}
    assert w.kinds() == ["start"]
    assert w.logs == ["challenger refused at registration: registering v2 failed: worker died"]


# --- the registry's deciding parts: the metrics a version is registered with, rollback ---------------------

def test_register_reads_metrics_only_for_this_bundle(tmp_path, capsys):
    from faceparse.registry import _load_metrics

    f = tmp_path / "eval.json"
    assert _load_metrics(f, False, "a" * 64) is None                    # missing, not asked for: a warning
    assert " ".join(capsys.readouterr().err.split()) == (
        f"warning: no test metrics ({f} missing): the version is registered without them and `promote` will "
        "refuse it")
    with pytest.raises(FileNotFoundError, match=r"^metrics file not found: .*eval\.json \(run `faceparse "
                                                r"evaluate` first\)$"):
        _load_metrics(f, True, "a" * 64)
    f.write_text("{not json")
    with pytest.raises(ValueError, match=r"eval\.json: not valid JSON: "):
        _load_metrics(f, False, "a" * 64)
    for bad in ([1, 2], {"miou": 0.5}):
        f.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=r"eval\.json: not an evaluation metrics file \(no mean_f1\)$"):
            _load_metrics(f, False, "a" * 64)
    f.write_text(json.dumps({"nme": 0.05}))
    assert _load_metrics(f, True, "a" * 64, key="nme") == {"nme": 0.05}  # the stage's own primary metric
    f.write_text(json.dumps({"mean_f1": 0.8, "bundle_sha256": "b" * 64}))
    with pytest.raises(ValueError, match=r"was computed for another model \(weights sha256 bbbbbbbbbbbb…, this "
                                         r"bundle aaaaaaaaaaaa…\): run `faceparse evaluate` on this bundle first$"):
        _load_metrics(f, True, "a" * 64)
    assert _load_metrics(f, True, "b" * 64) == {"mean_f1": 0.8, "bundle_sha256": "b" * 64}
    f.write_text(json.dumps({"mean_f1": 0.8, "bundle_sha256": ""}))       # no recorded weights: taken
    assert _load_metrics(f, False, "a" * 64)["mean_f1"] == 0.8


def test_register_tags_keep_floats_exact():
    from faceparse.registry import _tag

    assert _tag(0.1) == "0.1" and _tag(1 / 3) == "0.3333333333333333" and _tag(1e-20) == "1e-20"
    assert _tag(None) == "" and _tag(0) == "0" and _tag("val") == "val" and _tag(True) == "True"


class RollbackClient:
    """The MlflowClient calls registry.rollback makes, on dicts: versions {v: tags}, aliases {alias: v}."""

    def __init__(self, versions, aliases, fail_on: str | None = None):
        self.versions = {v: dict(t) for v, t in versions.items()}
        self.aliases = None if aliases is None else dict(aliases)     # None: no such registered model
        self.calls = []
        self.fail_on = fail_on

    def _check(self, name, what):
        from mlflow.exceptions import MlflowException

        assert name == "fp"
        if what == self.fail_on:
            raise MlflowException("store is read-only\nsecond line")

    def get_registered_model(self, name):
        from types import SimpleNamespace

        from mlflow.exceptions import MlflowException

        self._check(name, "get_registered_model")
        if self.aliases is None:
            raise MlflowException("Registered Model with name=fp not found", error_code="RESOURCE_DOES_NOT_EXIST")
        return SimpleNamespace(name=name, aliases=dict(self.aliases))

    def get_model_version(self, name, version):
        from types import SimpleNamespace

        from mlflow.exceptions import MlflowException

        self._check(name, "get_model_version")
        if version not in self.versions:
            raise MlflowException(f"Model Version (name={name}, version={version}) not found",
                                  error_code="RESOURCE_DOES_NOT_EXIST")
        return SimpleNamespace(version=version, tags=dict(self.versions[version]))

    def set_registered_model_alias(self, name, alias, version):
        self._check(name, "set_registered_model_alias")
        self.calls.append(("alias", alias, version))
        self.aliases[alias] = version

    def set_model_version_tag(self, name, version, key, value):
        self._check(name, "set_model_version_tag")
        self.calls.append(("tag", version, key))
        self.versions[version][key] = value

    def delete_registered_model_alias(self, name, alias):
        self._check(name, "delete_registered_model_alias")
        self.calls.append(("unalias", alias))
        del self.aliases[alias]


def rollback_with(monkeypatch, client):
    from faceparse import registry

    params = {"registry": {"model_name": "fp"}}

    def client_for(p):
        assert p is params          # the store comes from these params
        return client, "http://u:secret@127.0.0.1:5999"

    monkeypatch.setattr(registry, "client_for", client_for)
    return registry.rollback(params)


def test_registry_rollback_restores_the_previous_champion(monkeypatch):
    c = RollbackClient({"1": {}, "2": {"promotion.previous_champion": "1"}}, {"champion": "2", "challenger": "2"})
    out = rollback_with(monkeypatch, c)
    assert out == {"name": "fp", "champion_before": "2", "champion_after": "1",
                   "reason": "rolled back from v2 to the previous champion v1"}
    assert c.aliases == {"champion": "1"}                # the rolled-back version cannot be re-promoted
    assert c.calls[0] == ("alias", "champion", "1")
    assert {k for _, v, k in (x for x in c.calls if x[0] == "tag")} == {"rollback.at", "rollback.restored"}
    assert c.versions["2"]["rollback.restored"] == "1" and c.versions["2"]["rollback.at"].startswith("20")


def test_registry_rollback_keeps_a_newer_challenger(monkeypatch):
    c = RollbackClient({"1": {}, "2": {"promotion.previous_champion": "1"}, "3": {}},
                       {"champion": "2", "challenger": "3"})
    rollback_with(monkeypatch, c)
    assert c.aliases == {"champion": "1", "challenger": "3"} and ("unalias", "challenger") not in c.calls


@pytest.mark.parametrize("versions, aliases, message", [
    ({"1": {}}, {}, r"^registered model 'fp' has no 'champion' in http://127\.0\.0\.1:5999: nothing to roll "
                    r"back$"),                                       # the store's credentials left out
    ({"1": {}}, {"champion": "1"}, r"^cannot roll back 'fp': champion v1 was the first champion \(no previous "
                                   r"champion recorded\)$"),
    ({"1": {"promotion.previous_champion": ""}}, {"champion": "1"}, r"was the first champion"),
    ({"2": {"promotion.previous_champion": "1"}}, {"champion": "2"},
     r"^cannot roll back 'fp': the previous champion v1 no longer exists$"),
])
def test_registry_rollback_refusals_change_nothing(monkeypatch, versions, aliases, message):
    from faceparse.registry import RegistryError

    c = RollbackClient(versions, aliases)
    with pytest.raises(RegistryError, match=message):
        rollback_with(monkeypatch, c)
    assert c.calls == [] and c.aliases == aliases


def test_registry_rollback_names_a_missing_model_and_a_failing_store(monkeypatch):
    from faceparse.registry import RegistryError

    with pytest.raises(RegistryError, match=r"^registered model 'fp' not found in http://127\.0\.0\.1:5999 \(run "
                                            r"`faceparse register` first\)$"):
        rollback_with(monkeypatch, RollbackClient({}, None))
    c = RollbackClient({"1": {}, "2": {"promotion.previous_champion": "1"}}, {"champion": "2"},
                       fail_on="set_model_version_tag")
    with pytest.raises(RegistryError, match=r"^rolling back 'fp' failed on the MLflow store at "
                                            r"http://127\.0\.0\.1:5999: store is read-only$"):
        rollback_with(monkeypatch, c)
