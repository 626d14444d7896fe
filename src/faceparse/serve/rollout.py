"""Canary rollout on the local TorchServe: start → analyse → promote | rollback, and an automatic mode.

State: ``<run_dir>/rollout.json`` ``{model, stable, canary, percent, mirror, generation, phase, history}``,
written atomically here and applied by the router (``faceparse.serve.router``) within ~50 ms.

Drain order (no request fails): the router is switched first (new generation), then we wait until it
reports that generation applied and no request in flight to the version being retired, and only then
TorchServe is told (``PUT /models/NAME/VER/set-default``, ``DELETE /models/NAME/VER``).

Thresholds (``params.serve.rollout``): ``max_error_rate`` (canary 5xx share), ``max_client_error_delta``
(canary 4xx share minus stable's), ``max_latency_ratio`` (canary p95 / stable p95), ``min_agreement``
(the stage codec's agreement of canary vs stable answers on mirrored requests — label maps: mean IoU, points:
1 − NME, images: 1 − mean |a − b|; null: the codec's own ``min_agreement``), ``min_requests`` per arm and
``min_mirrored`` samples before judging; ``steps`` (traffic percentages), ``window_s`` (longest wait per
step), ``mirror_fraction``.
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable

from ..bundle import read_meta
from ..config import ConfigError
from ..defaults import section_defaults
from ..schema import Rollout
from ..stages import bundle_stage
from .client import Client, ServeError, parse_prometheus, wait_version_ready
from .codecs import codec_for
from .package import package, resolve_model
from .rollout_state import read_rollout, write_rollout
from .server import _pid_alive, read_state, run_dir_of

DEFAULTS = section_defaults(Rollout)   # every serve.rollout key → its default (faceparse.schema.Rollout)


def rollout_params(params: dict[str, Any]) -> dict[str, Any]:
    ro = dict(DEFAULTS)
    ro.update(((params.get("serve") or {}).get("rollout")) or {})
    unknown = set(ro) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"params: serve.rollout has unknown keys {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    pct = float(ro["percent"])
    if not 0 < pct <= 100:
        raise ConfigError(f"serve.rollout.percent must be in (0, 100], got {pct}")
    return ro


# --- helpers ---------------------------------------------------------------------------------------------

def _server(run_dir) -> tuple[Path, dict[str, Any], Client]:
    rd = run_dir_of(run_dir)
    st = read_state(rd)
    if not st or not _pid_alive(st.get("pid"), rd):
        raise ValueError(f"no TorchServe running from {rd}: `faceparse serve start` first")
    if not st.get("router"):
        raise ValueError("this server was started without the canary router (serve start --no-router)")
    return rd, st, Client.from_state(st)


def _router_stats(st: dict[str, Any], cl: Client) -> dict[str, Any]:
    r = cl.session.get(f"{st['router']['url']}/-/stats", headers=cl.auth("inference"), timeout=10)
    if r.status_code != 200:
        raise ServeError(f"router /-/stats → {r.status_code}: {r.text[:200]}")
    return r.json()


def wait_applied(st: dict[str, Any], cl: Client, generation: int, drain: list[str] = (),
                 timeout_s: float = 60.0) -> dict[str, Any]:
    """Until the router runs ``generation`` and has nothing in flight to the ``drain`` versions."""
    deadline = time.monotonic() + timeout_s
    snap: dict[str, Any] = {}
    while time.monotonic() < deadline:
        snap = _router_stats(st, cl)
        if snap["generation"] >= generation and all(snap["inflight"].get(str(v), 0) == 0 for v in drain if v):
            return snap
        time.sleep(0.05)
    raise ServeError(f"router did not apply generation {generation} / drain {list(drain)} within {timeout_s:.0f} s: "
                     f"{snap.get('generation')}, in flight {snap.get('inflight')}")


def _next_version(cl: Client, name: str) -> str:
    nums = [int(v["modelVersion"]) for v in cl.versions(name) if re.fullmatch(r"\d+", str(v["modelVersion"]))]
    return str(max(nums, default=0) + 1)


# --- the steps --------------------------------------------------------------------------------------------

def start_rollout(params: dict[str, Any], model: str, percent: float | None = None, version: str | None = None,
                  run_dir=None, workers: int | None = None) -> dict[str, Any]:
    """Package the challenger, register it beside the stable version, send it ``percent`` % of traffic."""
    ro = rollout_params(params)
    pct = float(percent if percent is not None else ro["percent"])
    if not 0 < pct <= 100:
        raise ValueError(f"--percent must be in (0, 100], got {pct}")
    rd, st, cl = _server(run_dir)
    state = read_rollout(rd) or {}
    name = state.get("model") or st["model_name"]
    stable = state.get("stable") or cl.default_version(name)
    if not stable:
        raise ValueError(f"model {name!r} has no stable version registered")
    if state.get("canary"):
        raise ValueError(f"a canary (v{state['canary']}) is already rolling out: promote or rollback it first")
    bundle, info = resolve_model(model, params)
    version = str(version or info.get("version") or _next_version(cl, name))
    registered = {str(v["modelVersion"]) for v in cl.versions(name)}
    if version in registered:
        raise ValueError(f"{name} v{version} is already registered in TorchServe (versions {sorted(registered)})")
    mar = package(bundle, params, model_store=st["model_store"], version=version, name=name)
    w = int(workers or params["serve"]["workers"])   # package() above required serve.workers
    t0 = time.monotonic()
    try:
        cl.register(mar.name, workers=w)
    except ServeError as e:
        # a version that fails to load leaves nothing serving: make sure it is gone, stable untouched
        try:
            cl.unregister(name, version)
        except ServeError:
            pass
        raise ServeError(f"challenger {name} v{version} failed to register: {e}") from None
    if not wait_version_ready(cl, name, version):
        cl.unregister(name, version)
        raise ServeError(f"challenger {name} v{version} registered but no worker is READY")

    new = write_rollout(rd, model=name, stable=str(stable), canary=version, percent=pct,
                        mirror=float(ro["mirror_fraction"]), phase="canary", source=str(model),
                        stage=bundle_stage(read_meta(bundle)))   # the router's agreement measure
    wait_applied(st, cl, new["generation"])
    return {"model": name, "stable": str(stable), "canary": version, "percent": pct, "mar": str(mar),
            "register_s": round(time.monotonic() - t0, 2), "router": st["router"]["url"],
            "generation": new["generation"]}


def set_percent(params: dict[str, Any], percent: float, run_dir=None) -> dict[str, Any]:
    rd, st, cl = _server(run_dir)
    state = read_rollout(rd) or {}
    if not state.get("canary"):
        raise ValueError("no canary is rolling out")
    if not 0 <= float(percent) <= 100:
        raise ValueError(f"percent must be within 0..100, got {percent}")
    new = write_rollout(rd, percent=float(percent), phase="canary")
    wait_applied(st, cl, new["generation"])
    return {"model": state["model"], "canary": state["canary"], "percent": float(percent), "generation": new["generation"]}


def _torchserve_metrics(cl: Client, name: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    try:
        text = cl.metrics()
    except Exception:  # noqa: BLE001 - metrics are informative only
        return out
    for metric, labels, value in parse_prometheus(text):
        if labels.get("model_name") != name or "model_version" not in labels:
            continue
        v = out.setdefault(labels["model_version"], {})
        v[metric] = v.get(metric, 0.0) + value
    for v in out.values():
        n = v.get("ts_inference_requests_total")
        if n and "ts_inference_latency_microseconds" in v:
            v["mean_latency_ms"] = v["ts_inference_latency_microseconds"] / n / 1000
    return out


def analyse(params: dict[str, Any], run_dir=None, snapshot: dict[str, Any] | None = None) -> dict[str, Any]:
    """Canary vs stable on the current generation: error rates, p95 latency, agreement → a verdict:
    ``promote`` (enough data, every check passes), ``rollback`` (a check fails), ``wait`` (too little data)."""
    ro = rollout_params(params)
    rd, st, cl = _server(run_dir)
    state = read_rollout(rd) or {}
    if not state.get("canary"):
        raise ValueError("no canary is rolling out")
    snap = snapshot or _router_stats(st, cl)
    return {**judge(ro, state, snap), "torchserve": _torchserve_metrics(cl, state["model"])}


def judge(ro: dict[str, Any], state: dict[str, Any], snap: dict[str, Any]) -> dict[str, Any]:
    """The decision of :func:`analyse` from the thresholds (``rollout_params``), the rollout state and a router
    snapshot (``Router.snapshot()`` / ``GET /-/stats``) alone: no server needed, so each gate is testable."""
    stable_v, canary_v = str(state["stable"]), str(state["canary"])
    empty = {"n": 0, "errors": 0, "client_errors": 0, "error_rate": None, "client_error_rate": None,
             "p50_ms": None, "p95_ms": None, "p99_ms": None}
    s = {**empty, **snap["versions"].get(stable_v, {}), "version": stable_v}
    c = {**empty, **snap["versions"].get(canary_v, {}), "version": canary_v}
    agree = snap.get("agreement") or {}
    failures, waiting, checks = [], [], {}
    # Errors are judged as soon as they are significant: a canary failing every request is stopped early.
    if c["n"]:
        er = c["errors"] / c["n"]
        checks["canary_error_rate"] = er
        if er > ro["max_error_rate"] and c["errors"] >= 3:
            failures.append(f"canary error rate {er:.1%} > {ro['max_error_rate']:.1%} ({c['errors']}/{c['n']})")
    for arm, d in (("stable", s), ("canary", c)):
        if d["n"] < ro["min_requests"]:
            waiting.append(f"{arm} has {d['n']}/{ro['min_requests']} requests")
    if not waiting:
        delta = (c["client_error_rate"] or 0) - (s["client_error_rate"] or 0)
        checks["client_error_delta"] = delta
        if delta > ro["max_client_error_delta"]:
            failures.append(f"canary 4xx rate exceeds stable's by {delta:.1%}")
        if s["p95_ms"] and c["p95_ms"]:
            ratio = c["p95_ms"] / s["p95_ms"]
            checks["p95_ratio"] = ratio
            if ratio > ro["max_latency_ratio"] and c["p95_ms"] - s["p95_ms"] > ro["latency_slack_ms"]:
                failures.append(f"canary p95 {c['p95_ms']:.1f} ms > {ro['max_latency_ratio']}× stable "
                                f"{s['p95_ms']:.1f} ms")
    n_agree = int(agree.get("n") or 0)
    if float(state.get("mirror") or 0) > 0 and ro["min_mirrored"] > 0:
        if n_agree < ro["min_mirrored"]:
            waiting.append(f"{n_agree}/{ro['min_mirrored']} mirrored requests compared")
        else:
            least, measure = agreement_floor(ro, state)
            checks["agreement"] = agree["mean"]
            if agree["mean"] < least:
                failures.append(f"agreement {agree['mean']:.3f} < {least} ({measure})")
        if agree.get("failed", 0) >= 3 and agree["failed"] > 0.5 * (n_agree + agree["failed"]):
            failures.append(f"{agree['failed']} mirrored requests failed on the other version")
    verdict = "rollback" if failures else ("wait" if waiting else "promote")
    return {"verdict": verdict, "failures": failures, "waiting": waiting, "checks": checks,
            "model": state["model"], "percent": state.get("percent"), "generation": snap["generation"],
            "stable": s, "canary": c, "agreement": agree,
            "thresholds": {k: ro[k] for k in ("max_error_rate", "max_client_error_delta", "max_latency_ratio",
                                              "min_agreement", "min_requests", "min_mirrored")},
            "min_agreement": agreement_floor(ro, state)[0]}


def agreement_floor(ro: dict[str, Any], state: dict[str, Any]) -> tuple[float, str]:
    """(the least mean agreement a canary needs, what is measured): ``min_agreement`` when params set it, else
    the codec's own for the rollout's stage (its answers' kind decides what agreeing means)."""
    codec = codec_for(state.get("stage"))
    least = ro["min_agreement"] if ro["min_agreement"] is not None else codec.min_agreement
    return float(least), codec.agreement_measure


def _with_canary(params: dict[str, Any], run_dir, action: str):
    """What promote and rollback both start from: thresholds, server handles and a rollout that has a canary."""
    ro = rollout_params(params)
    rd, st, cl = _server(run_dir)
    state = read_rollout(rd) or {}
    if not state.get("canary"):
        raise ValueError(f"no canary to {action}")
    return ro, rd, st, cl, state


def promote(params: dict[str, Any], run_dir=None) -> dict[str, Any]:
    """The canary becomes the stable version: router first (all traffic to the canary), drain the old
    version, then TorchServe's default version, then unregister the old one."""
    ro, rd, st, cl, state = _with_canary(params, run_dir, "promote")
    name, old, new = state["model"], str(state["stable"]), str(state["canary"])
    t0 = time.monotonic()
    g = write_rollout(rd, stable=new, canary=None, percent=0, mirror=0.0, phase="promoting")["generation"]
    wait_applied(st, cl, g, drain=[old], timeout_s=ro["drain_timeout_s"])
    cl.set_default(name, new)
    cl.unregister(name, old)
    write_rollout(rd, phase="stable", promoted=new, retired=old)
    return {"model": name, "promoted": new, "retired": old, "default": cl.default_version(name),
            "seconds": round(time.monotonic() - t0, 2)}


def rollback(params: dict[str, Any], run_dir=None, reason: str = "manual") -> dict[str, Any]:
    """Remove the canary: router back to stable only, drain the canary, unregister it."""
    ro, rd, st, cl, state = _with_canary(params, run_dir, "roll back")
    name, stable, canary = state["model"], str(state["stable"]), str(state["canary"])
    t0 = time.monotonic()
    g = write_rollout(rd, canary=None, percent=0, mirror=0.0, phase="rolling-back", reason=reason)["generation"]
    wait_applied(st, cl, g, drain=[canary], timeout_s=ro["drain_timeout_s"])
    cl.unregister(name, canary)
    write_rollout(rd, phase="stable", rolled_back=canary, reason=reason)
    return {"model": name, "rolled_back": canary, "stable": stable, "reason": reason,
            "default": cl.default_version(name), "seconds": round(time.monotonic() - t0, 2)}


def auto(params: dict[str, Any], model: str, run_dir=None, version: str | None = None,
         log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """start → for each step percentage: wait for data (≤ window_s), analyse; any failure or a step that
    never gets enough data → rollback; all steps pass → promote. Returns the decision and every analysis."""
    ro = rollout_params(params)
    log = log or (lambda _m: None)
    steps = [float(p) for p in ro["steps"]] or [float(ro["percent"])]
    try:
        started = start_rollout(params, model, percent=steps[0], version=version, run_dir=run_dir)
    except ServeError as e:
        log(f"challenger refused at registration: {e}")
        return {"decision": "rolled-back", "reason": str(e), "analyses": [], "start": None}
    log(f"canary {started['model']} v{started['canary']} at {steps[0]:g}% beside v{started['stable']}")
    analyses = []
    for i, pct in enumerate(steps):
        if i:
            set_percent(params, pct, run_dir)
            log(f"step {i + 1}/{len(steps)}: canary at {pct:g}%")
        deadline = time.monotonic() + float(ro["window_s"])
        while True:
            a = analyse(params, run_dir)
            if a["verdict"] != "wait" or time.monotonic() > deadline:
                break
            time.sleep(float(ro["poll_s"]))
        analyses.append(a)
        log(f"  {pct:g}%: {a['verdict']} stable n={a['stable']['n']} canary n={a['canary']['n']} "
            f"errors={a['canary']['errors']} agreement={a['agreement'].get('mean')}")
        if a["verdict"] != "promote":
            reason = "; ".join(a["failures"] or [f"not enough data within {ro['window_s']} s: " + "; ".join(a["waiting"])])
            rb = rollback(params, run_dir, reason=reason)
            log(f"rolled back v{rb['rolled_back']}: {reason}")
            return {"decision": "rolled-back", "reason": reason, "analyses": analyses, "start": started, "rollback": rb}
    pr = promote(params, run_dir)
    log(f"promoted v{pr['promoted']} (retired v{pr['retired']})")
    return {"decision": "promoted", "analyses": analyses, "start": started, "promote": pr}
