"""Canary rollout for the stages whose answers are not label maps — the 68 points and the 3D reconstruction —
on a real TorchServe behind the router, under live traffic (one server per stage): a healthy challenger
(the stable weights + 1e-4 noise) is promoted with the codec's own agreement (1 − NME of the points / of the
mesh's projected landmarks) above the codec's floor; a challenger whose handler fails every request is rolled
back; stable traffic sees no error either way. The parser's own canary: test_serving_canary.py."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from test_serving_canary import ROLLOUT, stable_failures, without_latency_gate

from faceparse.api import pretrained_dir
from faceparse.config import load_params
from faceparse.serve import rollout, server
from faceparse.serve.client import Client
from faceparse.serve.codecs import codec_for
from faceparse.serve.testing import Traffic, port_overrides, recon3d_bundle, variant_bundle
from faceparse.stages import for_stage

pytestmark = [pytest.mark.integration, pytest.mark.slow]

def _shipped_landmarks(directory) -> Path:
    # a random landmark net puts its 68 points nearly on one spot: 1 − NME over a ~0 inter-ocular distance
    # is meaningless, so the points' canary starts from the shipped model
    return variant_bundle(pretrained_dir("landmarks"), directory)


STABLE = {"landmarks": _shipped_landmarks, "recon3d": recon3d_bundle}


@pytest.fixture(scope="module", params=list(STABLE))
def env(request, tmp_path_factory, repo_root, real_samples):
    stage = request.param
    tmp = tmp_path_factory.mktemp(f"canary-{stage}")
    stable = STABLE[stage](tmp / "stable")
    os.environ["FACEPARSE_FAULT_INJECTION"] = "1"   # the broken challenger's handler fails on purpose
    params = for_stage(load_params(repo_root / "params.yaml", port_overrides() + ROLLOUT), stage)
    st = server.start(params, model=str(stable), run_dir=tmp / "run", model_store=tmp / "store", version="1")
    os.environ.pop("FACEPARSE_FAULT_INJECTION", None)
    yield {"stage": stage, "tmp": tmp, "stable": stable, "params": params, "state": st, "run": tmp / "run",
           "photo": (real_samples / "1.jpg").read_bytes()}
    server.stop(tmp / "run")


def _roll(env, challenger, version: str, params) -> tuple[dict, Traffic]:
    logs: list[str] = []
    with Traffic(env["state"], env["photo"], threads=3) as traffic:
        time.sleep(1.0)
        res = rollout.auto(params, str(challenger), run_dir=env["run"], version=version, log=logs.append)
        time.sleep(1.0)
    print("\n".join(logs))
    print(f"{env['stage']}: {res['decision']}; traffic {traffic.summary()}")
    return res, traffic


def test_a_healthy_challenger_is_promoted_on_its_codecs_agreement(env):
    healthy = variant_bundle(env["stable"], env["tmp"] / "healthy", seed=1, noise=1e-4)
    res, traffic = _roll(env, healthy, "2", without_latency_gate(env["params"]))
    assert res["decision"] == "promoted", str(res)[:2000]
    last = res["analyses"][-1]
    floor = codec_for(env["stage"]).min_agreement
    assert last["agreement"]["mean"] > floor and last["canary"]["errors"] == 0, last
    assert Client.from_state(env["state"]).default_version(env["state"]["model_name"]) == "2"
    assert not [r for r in traffic.records if r[1] != 200], traffic.summary()


def test_a_broken_challenger_is_rolled_back(env):
    broken = variant_bundle(env["stable"], env["tmp"] / "broken", seed=2, fault_injection={"error_rate": 1.0})
    res, traffic = _roll(env, broken, "3", env["params"])
    assert res["decision"] == "rolled-back"
    assert "canary error rate" in res["reason"] or "mirrored requests failed" in res["reason"], res["reason"]
    assert not stable_failures(traffic), stable_failures(traffic)[:5]
    cl = Client.from_state(env["state"])
    assert [v["modelVersion"] for v in cl.versions(env["state"]["model_name"])] == ["2"]
    assert rollout.read_rollout(env["run"])["canary"] is None
