"""The registry against a REAL `mlflow server` (sqlite backend, proxied artifacts) started by this module:
register → promote (first) → promote a better one → refuse a worse one → roll back → resolve @champion.

The tests share the module's server and run in file order: test_cli_and_clear_errors continues from the
registry state the first test leaves (champion v1, challenger v3)."""
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from faceparse.bundle import load_bundle, save_bundle
from faceparse.config import load_params
from faceparse.evaluate import sha256_file
from faceparse.models import build_model
from mlflow_server import free_port, make_fixture

pytestmark = pytest.mark.integration

mlflow_server = make_fixture(scope="module")

TINY = {"width": 8, "groups": [1, 1, 1], "norm": "instance", "decoder": "liif", "unfold": True,
        "reduce": [16, 8], "hidden": [16], "ensemble": True, "query_chunk": 16384, "preset": "tiny-test"}


def make_bundle(path: Path, seed: int, **meta) -> Path:
    torch.manual_seed(seed)
    return save_bundle(path, build_model(TINY, 19), {"model_config": TINY, "num_classes": 19,
                                                     "label_table": "celebamask-hq", "input_size": 32, **meta})


def metrics_for(bundle: Path, mean_f1: float, path: Path) -> Path:
    path.write_text(json.dumps({"mean_f1": mean_f1, "miou": mean_f1 / 2, "pixel_acc": 0.9, "n_images": 3,
                                "split": "test", "bundle_sha256": sha256_file(bundle / "weights.pt"),
                                "dataset_sha256": "d" * 64}))
    return path


@pytest.fixture(scope="module")
def env(mlflow_server, tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    name = f"fp-test-{uuid.uuid4().hex[:6]}"
    params = load_params(overrides=[f"registry.tracking_uri={mlflow_server.uri}", f"registry.model_name={name}",
                                    f"registry.registered_file={root / 'registered.json'}",
                                    "registry.promote_margin=0.01", "registry.experiment=registry-test",
                                    f"evaluate.metrics_file={root / 'eval.json'}"])
    return root, name, params


def test_register_promote_reject_rollback_resolve(env, mlflow_server, monkeypatch):
    from mlflow import MlflowClient

    from faceparse import registry
    from faceparse.tracking import get_or_create_experiment

    root, name, params = env
    monkeypatch.chdir(root)  # the download cache runs/models/ lands in the temp dir
    client = MlflowClient(mlflow_server.uri)

    # v1: the bundle names its training run (as `faceparse train` writes it): the artifact goes there.
    run = client.create_run(get_or_create_experiment(params), run_name="train")
    b1 = make_bundle(root / "b1", 1, mlflow_run_id=run.info.run_id)
    r1 = registry.register(params, b1, metrics_for(b1, 0.50, root / "m1.json"))
    assert (r1["name"], r1["version"], r1["alias"], r1["run_id"]) == (name, "1", "challenger", run.info.run_id)
    assert json.loads((root / "registered.json").read_text())["version"] == "1"
    arts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert any(a.startswith("bundle-") for a in arts)
    mv1 = client.get_model_version(name, "1")
    assert float(mv1.tags["mean_f1"]) == 0.50 and mv1.run_id == run.info.run_id

    p = registry.promote(params)
    assert p["promoted"] and p["champion_before"] is None and p["champion_after"] == "1"
    assert "first model" in p["reason"]

    # v2: better by more than the margin → promoted; its bundle has no run → a new run is made.
    b2 = make_bundle(root / "b2", 2)
    r2 = registry.register(params, b2, metrics_for(b2, 0.60, root / "m2.json"))
    assert r2["version"] == "2" and r2["run_id"] != run.info.run_id
    p = registry.promote(params)
    assert p["promoted"] and (p["champion_before"], p["champion_after"]) == ("1", "2")
    assert client.get_model_version(name, "2").tags["promotion.previous_champion"] == "1"

    # v3: worse than the champion → refused, reason recorded on the version, champion unchanged.
    b3 = make_bundle(root / "b3", 3)
    registry.register(params, b3, metrics_for(b3, 0.605, root / "m3.json"))  # +0.005 < margin 0.01
    p = registry.promote(params)
    assert not p["promoted"] and p["champion_after"] == "2" and "does not beat" in p["reason"]
    tags = client.get_model_version(name, "3").tags
    assert tags["promotion.decision"] == "rejected" and tags["promotion.reason"] == p["reason"]
    assert client.get_registered_model(name).aliases["champion"] == "2"

    # Roll back: champion 2 → 1; once more: v1 was the first champion → a clear error.
    rb = registry.rollback(params)
    assert (rb["champion_before"], rb["champion_after"]) == ("2", "1")
    assert client.get_model_version(name, "2").tags["rollback.restored"] == "1"
    with pytest.raises(registry.RegistryError, match="first champion"):
        registry.rollback(params)

    # Resolve @champion (= v1 after the rollback) from the server and load it.
    path, info = registry.resolve_bundle(f"models:/{name}@champion", tracking_uri=mlflow_server.uri)
    assert info["version"] == "1" and "champion" in info["aliases"]
    model, meta = load_bundle(path)
    ref, _ = load_bundle(b1)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    assert meta["mlflow_run_id"] == run.info.run_id
    p3, i3 = registry.resolve_bundle(f"models:/{name}/3", dst=root / "v3", tracking_uri=mlflow_server.uri)
    assert p3 == root / "v3" and i3["version"] == "3" and (p3 / "weights.pt").is_file()
    assert sha256_file(p3 / "weights.pt") == sha256_file(b3 / "weights.pt")


# One process of several resolving one model at once (make run's demos: the server packaging the champion while
# `predict` loads it); every download is logged, and all start together once each has imported faceparse.
RESOLVER = """
import pathlib, sys, time
from faceparse import registry
from faceparse.evaluate import sha256_file
real = registry._download
def logged(*a, **k):
    with open("downloads.log", "a") as f:
        f.write("1\\n")
    return real(*a, **k)
registry._download = logged
pathlib.Path(f"ready-{sys.argv[3]}").touch()
while not pathlib.Path("go").exists():
    time.sleep(0.005)
path, _ = registry.resolve_bundle(sys.argv[1], tracking_uri=sys.argv[2])
print(sha256_file(path / "weights.pt"))
"""


def test_concurrent_resolution_downloads_once(env, mlflow_server, tmp_path):
    """Four processes resolve models:/NAME/2 into one empty cache at the same moment: the bundle is downloaded
    once, and each gets it whole (before the lock, each downloaded and deleted the copy the others were reading)."""
    root, name, _ = env
    n = 4
    procs = [subprocess.Popen([sys.executable, "-c", RESOLVER, f"models:/{name}/2", mlflow_server.uri, str(i)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"}) for i in range(n)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < n and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
        time.sleep(0.05)
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=120) for p in procs]
    failed = "\n".join(err.strip().splitlines()[-1] for p, (_, err) in zip(procs, outs) if p.returncode)
    assert not failed, failed
    assert {out.strip() for out, _ in outs} == {sha256_file(root / "b2" / "weights.pt")}
    assert (tmp_path / "downloads.log").read_text().count("1") == 1


def test_cli_and_clear_errors(env, mlflow_server, monkeypatch, real_samples):
    from faceparse import registry
    from faceparse.cli import app

    root, name, params = env
    monkeypatch.chdir(root)
    uri = mlflow_server.uri
    with pytest.raises(registry.RegistryError, match="no alias 'staging'.*@champion"):
        registry.resolve_bundle(f"models:/{name}@staging", tracking_uri=uri)
    with pytest.raises(registry.RegistryError, match="no version 99"):
        registry.resolve_bundle(f"models:/{name}/99", tracking_uri=uri)
    with pytest.raises(registry.RegistryError, match="'no-such-model' not found"):
        registry.resolve_bundle("models:/no-such-model@champion", tracking_uri=uri)
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(registry.RegistryError, match=f"cannot reach the MLflow tracking server at {dead}"):
        registry.resolve_bundle(f"models:/{name}@champion", tracking_uri=dead)
    # Metrics computed for another bundle are refused.
    b4 = make_bundle(root / "b4", 4)
    with pytest.raises(ValueError, match="computed for another model"):
        registry.register(params, b4, metrics_for(root / "b1", 0.9, root / "m4.json"))

    sets = ["--set", f"registry.tracking_uri={uri}", "--set", f"registry.model_name={name}",
            "--set", "registry.promote_margin=0.01", "--set", f"registry.registered_file={root / 'reg.json'}"]
    params_file = Path(__file__).resolve().parents[2] / "params.yaml"
    runner = CliRunner()
    r = runner.invoke(app, ["promote", "--params", str(params_file), *sets])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)  # challenger v3 vs champion v1 (after the rollback): 0.605 > 0.50 + 0.01
    assert out["promoted"] and (out["challenger"], out["champion_before"]) == ("3", "1")
    r = runner.invoke(app, ["rollback", "--params", str(params_file), *sets])
    assert r.exit_code == 0 and json.loads(r.stdout)["champion_after"] == "1"
    # The rolled-back v3 lost 'challenger': promote now says so (exit 2, one line).
    r = runner.invoke(app, ["promote", "--params", str(params_file), *sets])
    assert r.exit_code == 2 and "no 'challenger' alias" in r.stderr
    # Predict from the registry through the CLI (tracking URI from params).
    r = runner.invoke(app, ["predict", "--params", str(params_file), *sets, "--model", f"models:/{name}@champion",
                            str(real_samples / "0.jpg"), "--out", str(root / "pred"), "-r", "40", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["results"][0]["model"] == f"models:/{name}/1"
    assert (root / "pred" / "0_label.png").is_file()


def test_evaluate_logs_test_metrics_to_the_training_run(env, mlflow_server, tmp_path):
    from mlflow import MlflowClient

    from faceparse.evaluate import log_to_mlflow
    from faceparse.stages.parser.evaluate import mlflow_metrics
    from faceparse.tracking import get_or_create_experiment

    _, _, params = env
    client = MlflowClient(mlflow_server.uri)
    run = client.create_run(get_or_create_experiment(params), run_name="train")
    result = {"mean_f1": 0.4, "miou": 0.3, "pixel_acc": 0.8, "per_class_f1": {"background": 0.9, "skin": None},
              "per_class_iou": {"background": 0.8, "skin": None}, "multires": {"64": {"mean_f1": 0.35, "miou": 0.2}}}
    mfile, table, plots = tmp_path / "eval.json", tmp_path / "table.md", tmp_path / "plots"
    mfile.write_text(json.dumps(result))
    table.write_text("| x |")
    plots.mkdir()
    (plots / "per_class_f1.csv").write_text("class,f1\n")
    assert log_to_mlflow(params, run.info.run_id, mlflow_metrics(result), [mfile, table, plots])
    got = client.get_run(run.info.run_id).data.metrics
    assert got["test_mean_f1"] == 0.4 and got["test_mean_f1_64"] == 0.35 and "test_f1_skin" not in got
    assert {a.path for a in client.list_artifacts(run.info.run_id, "eval")} >= {"eval/eval.json", "eval/plots"}
    # A run that does not exist: a warning, not an error.
    assert log_to_mlflow(params, "0" * 32, mlflow_metrics(result), [mfile, table, plots]) is False


def test_promotion_refusals(env, mlflow_server, monkeypatch):
    """Against the real server, a model of its own with margin 0: a strictly worse challenger, a tie and a
    challenger without a test mean F1 are each refused — champion unchanged, the refusal and its reason
    recorded on the version, no previous-champion link written (rollback cannot restore through it)."""
    from mlflow import MlflowClient

    from faceparse import registry
    from faceparse.cli import app

    root, _, _ = env
    name = f"fp-refuse-{uuid.uuid4().hex[:6]}"
    params_file = Path(__file__).resolve().parents[2] / "params.yaml"
    sets = [f"registry.tracking_uri={mlflow_server.uri}", f"registry.model_name={name}", "registry.promote_margin=0",
            f"registry.registered_file={root / 'refuse.json'}"]
    # evaluate.metrics_file: absent, so registering without an explicit file records no metrics
    params = load_params(params_file, overrides=sets + ["registry.experiment=registry-test",
                                                        f"evaluate.metrics_file={root / 'refuse-absent.json'}"])
    monkeypatch.chdir(root)
    client = MlflowClient(mlflow_server.uri)

    def register(seed: int, mean_f1: float | None) -> str:
        b = make_bundle(root / f"refuse-b{seed}", seed)
        m = metrics_for(b, mean_f1, root / f"refuse-m{seed}.json") if mean_f1 is not None else None
        return registry.register(params, b, m)["version"]

    def refused(version: str, reason: str) -> dict:
        p = registry.promote(params)
        assert (p["promoted"], p["decision"], p["challenger"]) == (False, "rejected", version), p
        assert p["champion_after"] == "1" and client.get_registered_model(name).aliases["champion"] == "1"
        assert reason in p["reason"], p["reason"]
        tags = client.get_model_version(name, version).tags
        assert tags["promotion.decision"] == "rejected" and tags["promotion.reason"] == p["reason"]
        assert "promotion.previous_champion" not in tags
        return p

    assert register(1, 0.60) == "1" and registry.promote(params)["promoted"]
    # strictly worse
    p = refused(register(2, 0.55), "does not beat champion v1 0.6000 + margin 0")
    assert (p["challenger_mean_f1"], p["champion_mean_f1"]) == (0.55, 0.60)
    # a tie does not beat the champion, even at margin 0
    refused(register(3, 0.60), "test mean F1 0.6000 does not beat champion v1 0.6000 + margin 0")
    # no metrics file at registration → no mean_f1 tag → refused, saying what to do
    v4 = register(4, None)
    assert "mean_f1" not in client.get_model_version(name, v4).tags
    refused(v4, f"challenger v{v4} has no test mean F1 (tag mean_f1): evaluate it and register again")
    # the CLI says the same (a refusal is a decision, not an error: exit 0, promoted false)
    r = CliRunner().invoke(app, ["promote", "--params", str(params_file), *[a for kv in sets for a in ("--set", kv)]])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["promoted"] is False and "no test mean F1" in out["reason"]
