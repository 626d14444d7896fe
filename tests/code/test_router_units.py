"""Fast unit tests of the canary router's routing and per-version statistics (no server; `make mutation`)."""
import pytest

from faceparse.serve.router import MAX_LAT, Router, Stats, percentile


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
