"""Fast unit tests of the rollout decision (`rollout.judge`, fed router snapshots by hand) and of the
rollout thresholds' validation (`rollout_params`); no server (`make mutation`)."""
import pytest

from faceparse.config import ConfigError
from faceparse.serve.codecs import codec_for
from faceparse.serve.rollout import DEFAULTS, judge, rollout_params

RO = rollout_params({})   # DEFAULTS: min_requests 30, min_mirrored 5, max_error_rate 0.01, max_client_error_delta
#                           0.01, max_latency_ratio 1.5, latency_slack_ms 5, min_agreement null (the parser codec: 0.8)
STATE = {"model": "m", "stable": 1, "canary": 2, "percent": 10, "mirror": 0.2}


def arm(n=30, errors=0, client_errors=0, p95=10.0, **kw):
    return {"n": n, "errors": errors, "client_errors": client_errors, "error_rate": errors / n if n else None,
            "client_error_rate": client_errors / n if n else None, "p50_ms": p95, "p95_ms": p95, "p99_ms": p95, **kw}


def snap(stable=None, canary=None, agreement=None, generation=7):
    versions = {}
    if stable is not None:
        versions["1"] = stable
    if canary is not None:
        versions["2"] = canary
    return {"generation": generation, "versions": versions, "agreement": agreement}


GOOD_AGREE = {"n": 5, "failed": 0, "dropped": 0, "mean": 0.9, "min": 0.85}


def test_healthy_canary_is_promoted_with_every_check_recorded():
    d = judge(RO, STATE, snap(arm(), arm(p95=12.0), GOOD_AGREE))
    assert d["verdict"] == "promote" and d["failures"] == [] and d["waiting"] == []
    assert d["checks"] == {"canary_error_rate": 0.0, "client_error_delta": 0.0, "p95_ratio": 1.2,
                           "agreement": 0.9}
    assert (d["model"], d["percent"], d["generation"]) == ("m", 10, 7)
    assert d["stable"]["version"] == "1" and d["canary"]["version"] == "2" and d["canary"]["p95_ms"] == 12.0
    assert d["agreement"] == GOOD_AGREE
    assert d["thresholds"] == {"max_error_rate": 0.01, "max_client_error_delta": 0.01, "max_latency_ratio": 1.5,
                               "min_agreement": None, "min_requests": 30, "min_mirrored": 5}
    assert d["min_agreement"] == 0.8        # null in params: the parser codec's own floor


def test_too_few_requests_waits_per_arm_and_exact_minimum_is_enough():
    d = judge(RO, STATE, snap(arm(n=29), arm(n=30), GOOD_AGREE))
    assert d["verdict"] == "wait" and d["waiting"] == ["stable has 29/30 requests"] and d["failures"] == []
    assert "client_error_delta" not in d["checks"]        # the comparisons wait for enough data
    d = judge(RO, STATE, snap(arm(n=30), arm(n=29), GOOD_AGREE))
    assert d["waiting"] == ["canary has 29/30 requests"]
    # no traffic at all: both arms listed, no error rate computed for an empty canary
    d = judge(RO, STATE, snap(agreement=GOOD_AGREE))
    assert d["verdict"] == "wait"
    assert d["waiting"] == ["stable has 0/30 requests", "canary has 0/30 requests"]
    assert d["checks"] == {"agreement": 0.9}
    assert d["stable"] == {"n": 0, "errors": 0, "client_errors": 0, "error_rate": None, "client_error_rate": None,
                           "p50_ms": None, "p95_ms": None, "p99_ms": None, "version": "1"}


def test_error_gate_needs_three_errors_and_a_rate_strictly_above_the_limit():
    # 3/10 = 30 % > 1 %: rolled back at once, even before enough requests arrived
    d = judge(RO, STATE, snap(arm(n=5), arm(n=10, errors=3), GOOD_AGREE))
    assert d["verdict"] == "rollback"
    assert d["failures"] == ["canary error rate 30.0% > 1.0% (3/10)"]
    assert d["checks"]["canary_error_rate"] == pytest.approx(0.3)
    # 2 errors are not yet significant
    d = judge(RO, STATE, snap(arm(n=5), arm(n=10, errors=2), GOOD_AGREE))
    assert d["verdict"] == "wait" and d["failures"] == []
    assert d["checks"]["canary_error_rate"] == pytest.approx(0.2)
    # exactly at the limit passes: 3/300 = 1 %; 4/300 fails
    ro = {**RO, "min_requests": 300}
    assert judge(ro, STATE, snap(arm(n=300), arm(n=300, errors=3), GOOD_AGREE))["verdict"] == "promote"
    d = judge(ro, STATE, snap(arm(n=300), arm(n=300, errors=4), GOOD_AGREE))
    assert d["verdict"] == "rollback" and d["failures"] == ["canary error rate 1.3% > 1.0% (4/300)"]


def test_client_error_delta_gate():
    ro = {**RO, "max_client_error_delta": 0.25}
    # 4xx share: stable 8/32 = 0.25, canary 16/32 = 0.5 → delta 0.25, not above 0.25
    d = judge(ro, STATE, snap(arm(n=32, client_errors=8), arm(n=32, client_errors=16), GOOD_AGREE))
    assert d["verdict"] == "promote" and d["checks"]["client_error_delta"] == 0.25
    d = judge(ro, STATE, snap(arm(n=32, client_errors=8), arm(n=32, client_errors=17), GOOD_AGREE))
    assert d["verdict"] == "rollback"
    assert d["failures"] == ["canary 4xx rate exceeds stable's by 28.1%"]   # 9/32
    # a missing rate counts as 0 on either side
    c = arm(n=32, client_errors=16)
    s = {**arm(n=32), "client_error_rate": None}
    d = judge(ro, STATE, snap(s, c, GOOD_AGREE))
    assert d["checks"]["client_error_delta"] == 0.5 and d["verdict"] == "rollback"
    d = judge(ro, STATE, snap(arm(n=32, client_errors=16), {**arm(n=32), "client_error_rate": None}, GOOD_AGREE))
    assert d["checks"]["client_error_delta"] == -0.5 and d["verdict"] == "promote"


def test_latency_gate_needs_both_ratio_and_slack_exceeded():
    def verdict(s95, c95):
        return judge(RO, STATE, snap(arm(p95=s95), arm(p95=c95), GOOD_AGREE))

    d = verdict(10.0, 16.0)                        # ratio 1.6 > 1.5 and 6 ms > 5 ms
    assert d["verdict"] == "rollback" and d["checks"]["p95_ratio"] == 1.6
    assert d["failures"] == ["canary p95 16.0 ms > 1.5× stable 10.0 ms"]
    assert verdict(10.0, 15.0)["verdict"] == "promote"     # ratio exactly 1.5
    assert verdict(2.0, 6.0)["verdict"] == "promote"       # ratio 3 but only 4 ms slower
    assert verdict(4.0, 9.0)["verdict"] == "promote"       # ratio 2.25, exactly 5 ms slower
    assert verdict(4.0, 9.5)["verdict"] == "rollback"      # 5.5 ms slower
    assert verdict(20.0, 4.0)["checks"]["p95_ratio"] == 0.2
    d = verdict(None, 50.0)                        # no latency sample on one side: not judged
    assert "p95_ratio" not in d["checks"] and d["verdict"] == "promote"
    assert "p95_ratio" not in verdict(10.0, None)["checks"]


def test_agreement_gate():
    def decide(agree, mirror=0.2, ro=RO):
        return judge(ro, {**STATE, "mirror": mirror}, snap(arm(), arm(), agree))

    d = decide({"n": 4, "failed": 0, "mean": 0.95})
    assert d["verdict"] == "wait" and d["waiting"] == ["4/5 mirrored requests compared"]
    assert "agreement" not in d["checks"]
    assert decide({"n": 5, "failed": 0, "mean": 0.8})["verdict"] == "promote"     # exactly the minimum
    d = decide({"n": 5, "failed": 0, "mean": 0.79})
    assert d["verdict"] == "rollback" and d["failures"] == ["agreement 0.790 < 0.8 (label maps: mean IoU)"]
    assert d["checks"]["agreement"] == 0.79
    # no mirroring configured (or no minimum): agreement is not required
    assert decide(None, mirror=0)["verdict"] == "promote"
    assert decide(None, mirror=None)["verdict"] == "promote"
    assert decide({}, ro={**RO, "min_mirrored": 0})["verdict"] == "promote"
    assert decide({"n": None, "failed": 0, "mean": None})["waiting"] == ["0/5 mirrored requests compared"]
    # a minimum of one comparison is still a minimum
    d = decide({"n": 0, "failed": 0, "mean": None}, ro={**RO, "min_mirrored": 1})
    assert d["verdict"] == "wait" and d["waiting"] == ["0/1 mirrored requests compared"]
    assert decide({"n": 1, "failed": 0, "mean": 0.5}, ro={**RO, "min_mirrored": 1})["verdict"] == "rollback"


def test_failed_mirrors_gate():
    def decide(n, failed):
        return judge(RO, STATE, snap(arm(), arm(), {"n": n, "failed": failed, "mean": 0.9 if n else None}))

    msg = "3 mirrored requests failed on the other version"
    assert decide(2, 3)["failures"] == [msg]                # 3 > 0.5 · 5
    assert decide(2, 3)["verdict"] == "rollback"            # failing beats waiting
    assert decide(3, 3)["failures"] == []                   # 3 is not more than half of 6
    assert decide(0, 2)["failures"] == []                   # fewer than 3 failures: not yet significant
    assert decide(0, 3)["failures"] == [msg]
    assert decide(5, 4)["failures"] == [] and decide(5, 4)["verdict"] == "promote"
    assert decide(5, 6)["failures"] == ["6 mirrored requests failed on the other version"]
    d = judge(RO, STATE, snap(arm(), arm(), {"n": 5, "mean": 0.9}))   # no "failed" key
    assert d["verdict"] == "promote"


def test_every_failure_is_listed():
    d = judge(RO, STATE, snap(arm(), arm(errors=3, client_errors=3, p95=30.0), {"n": 5, "failed": 6,
                                                                                 "mean": 0.5}))
    assert d["verdict"] == "rollback"
    assert d["failures"] == ["canary error rate 10.0% > 1.0% (3/30)", "canary 4xx rate exceeds stable's by 10.0%",
                             "canary p95 30.0 ms > 1.5× stable 10.0 ms", "agreement 0.500 < 0.8 (label maps: mean IoU)",
                             "6 mirrored requests failed on the other version"]


# --- thresholds ------------------------------------------------------------------------------------------

def test_rollout_params_defaults_and_overrides():
    assert rollout_params({}) == DEFAULTS
    assert rollout_params({"serve": None}) == DEFAULTS
    assert rollout_params({"serve": {"rollout": None}}) == DEFAULTS
    ro = rollout_params({"serve": {"rollout": {"min_requests": 3, "percent": 100}}})
    assert ro["min_requests"] == 3 and ro["percent"] == 100 and ro["max_error_rate"] == DEFAULTS["max_error_rate"]
    assert DEFAULTS["min_requests"] == 30                  # the defaults themselves are not modified
    assert rollout_params({"serve": {"rollout": {"percent": "0.5"}}})["percent"] == "0.5"   # kept as given


def test_rollout_params_refuses_unknown_keys_and_bad_percent():
    with pytest.raises(ConfigError, match=r"^params: serve\.rollout has unknown keys \['max_err', 'zz'\]; known: "
                                          r"\['drain_timeout_s', "):
        rollout_params({"serve": {"rollout": {"max_err": 1, "zz": 2}}})
    for bad in (0, -5, 100.5):
        with pytest.raises(ConfigError, match=rf"^serve\.rollout\.percent must be in \(0, 100\], got {float(bad)}$"):
            rollout_params({"serve": {"rollout": {"percent": bad}}})


@pytest.mark.parametrize("stage, mean, verdict, measure", [
    ("landmarks", 0.96, "promote", None),
    ("landmarks", 0.93, "rollback", "points: 1 − NME"),            # 0.93 would pass a label map's 0.8
    ("fisn", 0.85, "rollback", "raw outputs: 1 − mean |a − b| / 255"),
    ("completion", 0.85, "promote", None),
])
def test_the_agreement_floor_is_the_served_stage_codecs_own(stage, mean, verdict, measure):
    d = judge(RO, {**STATE, "stage": stage}, snap(arm(), arm(), {"n": 5, "failed": 0, "mean": mean}))
    assert d["verdict"] == verdict and d["min_agreement"] == codec_for(stage).min_agreement
    if measure:
        assert d["failures"] == [f"agreement {mean:.3f} < {codec_for(stage).min_agreement} ({measure})"]
    assert judge({**RO, "min_agreement": 0.5}, {**STATE, "stage": stage},
                 snap(arm(), arm(), {"n": 5, "failed": 0, "mean": mean}))["verdict"] == "promote"   # params win
