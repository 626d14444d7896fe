"""The seam, proved end to end: a stage defined in a package outside ``src/`` (tests/fixtures/plugin/toy_stage,
joined by its ``faceparse.stages`` entry point, with no edit to faceparse) goes the whole path — data →
train → evaluate → register → promote → package → a served answer through TorchServe and the router →
`faceparse stages --json` → the web page's stage list."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from faceparse.serve.testing import free_port, post_prediction, serve_stage

pytestmark = pytest.mark.integration

PLUGIN = Path(__file__).resolve().parents[1] / "fixtures" / "plugin"


@pytest.fixture(scope="module")
def plugin(monkeypatch_module):
    """toy_stage importable here, in every command and in TorchServe's workers (they inherit PYTHONPATH)."""
    monkeypatch_module.setenv("PYTHONPATH", os.pathsep.join([str(PLUGIN), os.environ.get("PYTHONPATH", "")]))
    monkeypatch_module.syspath_prepend(str(PLUGIN))
    from faceparse import stages

    monkeypatch_module.setattr(stages, "_PACKAGES", dict(stages._PACKAGES))   # the toy stage leaves with the module
    monkeypatch_module.setattr(stages, "_DISCOVERED", [])     # found again, now that its entry point is on the path
    assert "toy" in stages.stage_names()
    return dict(os.environ)


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def toy_run(plugin, tmp_path_factory, repo_root):
    """The toy stage's whole CLI path in a scratch folder; (params file, the step outputs)."""
    tmp = tmp_path_factory.mktemp("toy")
    params = tmp / "toy.yaml"
    params.write_text(yaml.safe_dump({
        "extends": str(repo_root / "params.yaml"),
        "data": {"dir": str(tmp / "data"), "size": 64},
        "validate": {"out_dir": str(tmp / "validation")},
        "registry": {"tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}", "experiment": "toy"},
        "toy": {"model": {"width": 8},
                "train": {"epochs": 3, "batch_size": 8, "lr": 0.01, "lr_step": 10, "lr_gamma": 0.1,
                          "input_size": 64, "num_workers": 0, "seed": 0, "run_dir": str(tmp / "toy" / "train"),
                          "bundle_dir": str(tmp / "toy" / "model"), "augment": {"enabled": False}},
                "evaluate": {"split": "test", "metrics_file": str(tmp / "metrics" / "eval.json"), "batch_size": 8},
                "registry": {"model_name": "toy-face-share", "promote_margin": 0.0,
                             "registered_file": str(tmp / "metrics" / "registered.json")}}}))
    p = ["-p", str(params)]
    steps = [["data", "synth", "--out", str(tmp / "data"), "--n", "48", "--size", "64", "--quiet", *p],
             ["data", "validate", str(tmp / "data"), "--out-dir", str(tmp / "validation"), *p],
             ["train", "--stage", "toy", "--no-progress", *p],
             ["evaluate", "--stage", "toy", *p],
             ["register", "--stage", "toy", *p],
             ["promote", "--stage", "toy", *p],
             ["package", "--stage", "toy", "--model", "models:/toy-face-share@champion",
              "--model-store", str(tmp / "store"), *p]]
    for args in steps:
        r = subprocess.run([sys.executable, "-m", "faceparse", *args], cwd=tmp, env=plugin, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, f"faceparse {' '.join(args[:3])}: exit {r.returncode}\n{(r.stdout + r.stderr)[-3000:]}"
    return params, tmp


def test_it_trains_evaluates_registers_promotes_and_packages(toy_run):
    params, tmp = toy_run
    result = json.loads((tmp / "metrics" / "eval.json").read_text())
    assert result["stage"] == "toy" and 0 <= result["mae"] < 0.5 and result["n"] > 0
    registered = json.loads((tmp / "metrics" / "registered.json").read_text())
    assert registered["uri"].startswith("models:/toy-face-share/")
    assert list((tmp / "store").glob("*.mar"))


def test_it_is_served_through_the_router(toy_run, real_samples):
    params, tmp = toy_run
    gen = serve_stage(params, "toy", tmp / "toy" / "model", tmp / "serve")
    st, _ = next(gen)
    try:
        r = post_prediction(st, (real_samples / "0.jpg").read_bytes())
        assert r.status_code == 200, r.text[:300]
        assert 0.0 <= r.json()["face_share"] <= 1.0
        assert post_prediction(st, b"not an image").status_code == 400
    finally:
        next(gen, None)


def test_it_is_listed_by_the_cli_and_on_the_web_page(toy_run, plugin, repo_root):
    listed = subprocess.run([sys.executable, "-m", "faceparse", "stages", "--json"], cwd=repo_root, env=plugin,
                            capture_output=True, text=True, timeout=120)
    assert "toy" in [s["name"] for s in json.loads(listed.stdout)]
    port = free_port()
    page = subprocess.Popen([sys.executable, "-m", "faceparse", "ui", "page", "--port", str(port), "--endpoint",
                             "http://127.0.0.1:9", "--samples", str(repo_root.parent / "shared" / "fixtures" /
                                                                    "celebamask-hq-samples")],
                            cwd=repo_root, env=plugin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        info = None
        for _ in range(120):
            try:
                info = requests.get(f"http://127.0.0.1:{port}/api/info", timeout=5).json()
                break
            except requests.ConnectionError:
                if page.poll() is not None:
                    pytest.fail(f"the page server stopped: {page.stderr.read()[-2000:]}")
                import time
                time.sleep(0.5)
        assert info is not None and "toy" in [s["name"] for s in info["registered"]]
    finally:
        page.terminate()
        page.wait(timeout=30)
