"""The canary router's traffic split (seeded draws) and each rollback gate of the rollout decision, fed the
router's own snapshot format (a real ``Router`` whose stats and mirrored comparisons are filled in, no
server), plus the agreement IoU pinned to hand-computed values. The live flow (5xx gate, an agreement gate
and a step with no traffic rolled back on a real TorchServe) is in tests/integration/test_serving_canary.py."""
from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from faceparse.serve import rollout
from faceparse.serve.imaging import label_png, mean_iou
from faceparse.serve.router import Router, Stats, _iou

MODEL, STABLE, CANARY = "faceparse-fpliif", "1", "2"
# Explicit thresholds (not params.yaml's, which may be retuned): what each gate is judged against below.
RO = rollout.rollout_params({"serve": {"rollout": {
    "min_requests": 30, "min_mirrored": 5, "max_error_rate": 0.01, "max_client_error_delta": 0.01,
    "max_latency_ratio": 1.5, "latency_slack_ms": 5.0, "min_agreement": 0.8}}})


def make_router(tmp_path, percent: float, canary: str | None = CANARY, mirror: float = 0.3, seed: int = 0) -> Router:
    """A router reading a rollout.json written by the rollout module itself (what the live router polls)."""
    rollout.write_rollout(tmp_path, model=MODEL, stable=STABLE, canary=canary, percent=percent, mirror=mirror)
    r = Router(tmp_path, "http://127.0.0.1:9", tmp_path / "key_file.json")
    r.reload()
    r.rng = random.Random(seed)
    return r


# --- the split -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("percent", [30, 60])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_matches_percent(tmp_path, percent, seed):
    r = make_router(tmp_path, percent, seed=seed)
    n = 20000   # σ of the share ≈ 0.35 points: ±2 points is > 5σ for every seed
    got = Counter(r.route(MODEL) for _ in range(n))
    assert set(got) == {(CANARY, "canary"), (STABLE, "stable")}   # each arm goes to its own version
    share = 100 * got[(CANARY, "canary")] / n
    assert abs(share - percent) <= 2, f"canary share {share:.2f}% at percent={percent}"


def test_zero_percent_never_canary_and_full_percent_always(tmp_path):
    for seed in range(3):
        r = make_router(tmp_path, 0, seed=seed)
        assert {r.route(MODEL) for _ in range(20000)} == {(STABLE, "stable")}
    # the percent comes from rollout.json: a new generation applies the new split
    rollout.write_rollout(tmp_path, percent=100)
    r.reload()
    assert {r.route(MODEL) for _ in range(5000)} == {(CANARY, "canary")}
    rollout.write_rollout(tmp_path, canary=None, percent=50)   # no canary: stable whatever the percent
    r.reload()
    assert {r.route(MODEL) for _ in range(2000)} == {(STABLE, "stable")}
    assert r.route("another-model") == (None, None)   # not the rolled-out model: passes through


# --- the agreement IoU, exact values ---------------------------------------------------------------------

A = np.array([[0, 0], [1, 1]], np.uint8)
B = np.array([[0, 1], [1, 1]], np.uint8)


def test_mean_iou_exact_values():
    # class 0: ∩ 1, ∪ 2 → 1/2; class 1: ∩ 2, ∪ 3 → 2/3; mean 7/12
    assert mean_iou(A, B) == pytest.approx(7 / 12, abs=1e-12)
    assert mean_iou(B, A) == pytest.approx(7 / 12, abs=1e-12)
    # classes absent from both maps do not count (not as 1, not as 0), whatever num_classes says
    assert mean_iou(A, B, num_classes=19) == pytest.approx(7 / 12, abs=1e-12)
    # a class present in one map only counts as 0: class 0 → 3/4, class 2 → 0/1; mean 3/8
    c = np.zeros((2, 2), np.uint8)
    d = c.copy()
    d[1, 1] = 2
    assert mean_iou(c, d) == pytest.approx(3 / 8, abs=1e-12)
    # 3×3: a = rows (0, 1, 2), b shifts one pixel of class 1 to 2 and one of 2 to 0
    a = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]], np.uint8)
    b = np.array([[0, 0, 0], [1, 1, 2], [0, 2, 2]], np.uint8)
    # class 0: ∩ 3, ∪ 4 → 3/4; class 1: ∩ 2, ∪ 3 → 2/3; class 2: ∩ 2, ∪ 4 → 1/2; mean 23/36
    assert mean_iou(a, b) == pytest.approx(23 / 36, abs=1e-12)
    assert mean_iou(A, A) == 1.0 and mean_iou(A, (A + 1) % 19) == 0.0
    with pytest.raises(ValueError, match="shape"):
        mean_iou(A, np.zeros((3, 2), np.uint8))
    # what the router computes from the two versions' PNG answers; an undecodable answer is no sample
    assert _iou(label_png(a), label_png(b)) == pytest.approx(23 / 36, abs=1e-12)
    assert _iou(label_png(a), b"not a png") is None


# --- the gates -------------------------------------------------------------------------------------------

def snapshot(tmp_path, stable=(), canary=(), mirrored=()):
    """A router snapshot: ``stable`` / ``canary`` = [(status, ms)] per request, ``mirrored`` = [(live map,
    other map)] compared by the router's own IoU path (PNG bytes, as the two versions answer)."""
    r = make_router(tmp_path, 30)
    for version, reqs in ((STABLE, stable), (CANARY, canary)):
        for status, ms in reqs:
            r.stats.setdefault(version, Stats()).add(status, ms)
    for live, other in mirrored:
        r.agreement.append({"live": STABLE, "other": CANARY, "agreement": _iou(label_png(live), label_png(other)),
                            "status": 200})
    return r.snapshot(), rollout.read_rollout(tmp_path)


def ok(n=40, ms=100.0):
    return [(200, ms + (i % 10)) for i in range(n)]   # a spread, so p95 is not simply the constant


SAME = [(A, A)] * 6


def judge(tmp_path, **kw):
    snap, state = snapshot(tmp_path, **kw)
    return rollout.judge(RO, state, snap)


def test_healthy_challenger_passes_every_gate(tmp_path):
    a = judge(tmp_path, stable=ok(), canary=ok(), mirrored=SAME)
    assert (a["verdict"], a["failures"], a["waiting"]) == ("promote", [], [])
    assert a["checks"]["agreement"] == 1.0 and a["checks"]["client_error_delta"] == 0
    assert a["checks"]["p95_ratio"] == pytest.approx(1.0)


def test_agreement_gate(tmp_path):
    # a challenger answering other labels (every class shifted by one) but as fast and error-free
    a = judge(tmp_path, stable=ok(), canary=ok(), mirrored=[(A, (A + 1) % 19)] * 6)
    assert a["verdict"] == "rollback" and len(a["failures"]) == 1, a["failures"]
    assert a["failures"][0].startswith("agreement 0.000 < 0.8 (label maps: mean IoU)")
    # at the threshold exactly: 4 identical + 1 disjoint comparison = mean IoU 0.8 → not a failure
    a = judge(tmp_path, stable=ok(), canary=ok(), mirrored=[(A, A)] * 4 + [(A, (A + 1) % 19)])
    assert a["verdict"] == "promote" and a["checks"]["agreement"] == pytest.approx(0.8)
    # 7/12 per comparison: below 0.8
    a = judge(tmp_path, stable=ok(), canary=ok(), mirrored=[(A, B)] * 5)
    assert a["verdict"] == "rollback" and a["checks"]["agreement"] == pytest.approx(7 / 12)


def test_latency_gate(tmp_path):
    # twice as slow, well beyond the slack: only the latency check fails
    a = judge(tmp_path, stable=ok(ms=100), canary=ok(ms=200), mirrored=SAME)
    assert a["verdict"] == "rollback" and len(a["failures"]) == 1, a["failures"]
    assert a["failures"][0].startswith("canary p95 209.0 ms > 1.5× stable 109.0 ms")   # p95 of 4 × 100..109 ms
    # a slow tail behind a normal median (1 request in 10 at 300 ms): judged on p95, not on the median
    tail = [(200, 300.0 if i % 10 == 9 else 100.0 + i % 10) for i in range(40)]
    a = judge(tmp_path, stable=ok(ms=100), canary=tail, mirrored=SAME)
    assert a["verdict"] == "rollback" and a["checks"]["p95_ratio"] == pytest.approx(300 / 109)
    # exactly 1.5× is allowed; so is 2× while the difference stays within latency_slack_ms (5 ms)
    assert judge(tmp_path, stable=ok(ms=100), canary=[(200, 1.5 * ms) for _, ms in ok(ms=100)],
                 mirrored=SAME)["verdict"] == "promote"
    a = judge(tmp_path, stable=[(200, 2.0)] * 40, canary=[(200, 4.0)] * 40, mirrored=SAME)
    assert a["verdict"] == "promote" and a["checks"]["p95_ratio"] == 2.0


def test_client_error_delta_gate(tmp_path):
    # the challenger refuses 4 in 40 requests with a 4xx that the stable answers: delta 10 points
    bad = ok(36) + [(400, 5.0)] * 4
    a = judge(tmp_path, stable=ok(), canary=bad, mirrored=SAME)
    assert a["verdict"] == "rollback" and len(a["failures"]) == 1, a["failures"]
    assert a["failures"][0] == "canary 4xx rate exceeds stable's by 10.0%"
    # the same share of bad input on both arms is the clients' doing, not the challenger's
    a = judge(tmp_path, stable=bad, canary=bad, mirrored=SAME)
    assert a["verdict"] == "promote" and a["checks"]["client_error_delta"] == 0


def test_not_enough_data_waits_and_errors_are_judged_early(tmp_path):
    # too few canary requests and too few mirrored comparisons: no verdict yet (auto() rolls back a step
    # that stays here until window_s runs out: the live test)
    a = judge(tmp_path, stable=ok(), canary=ok(29), mirrored=SAME[:4])
    assert a["verdict"] == "wait" and a["failures"] == []
    assert a["waiting"] == ["canary has 29/30 requests", "4/5 mirrored requests compared"]
    assert judge(tmp_path, stable=ok(29), canary=ok(), mirrored=SAME)["waiting"] == ["stable has 29/30 requests"]
    # but a canary failing every request is stopped without waiting for min_requests
    a = judge(tmp_path, stable=ok(5), canary=[(503, 5.0)] * 3, mirrored=())
    assert a["verdict"] == "rollback" and a["failures"][0].startswith("canary error rate 100.0% > 1.0% (3/3)")
