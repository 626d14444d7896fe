"""The pipelines come from the registered stages (issue #30): dvc.yaml's per-stage `foreach` lists are what
`faceparse stages dvc` generates from each stage's ``dvc`` declaration; the kfp pipeline's gates follow each
stage's metric direction and a stage from another package joins both; `faceparse stages summary` prints each
stage's headline."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc.repo import Repo
from typer.testing import CliRunner

from faceparse import dvcgen, stages
from faceparse.cli import app
from faceparse.stages import get_stage, stage_names

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "tests" / "fixtures" / "plugin"   # toy_stage + its entry point
BUILT_IN = ["parser", "landmarks", "completion", "fisn", "recon3d"]


@pytest.fixture
def toy(monkeypatch):
    """toy_stage registered by register_stage (not by its entry point), for this test only."""
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.setattr(stages, "_PACKAGES", dict(stages._PACKAGES))
    stages.register_stage("toy", "toy_stage")
    return get_stage("toy")


def test_committed_dvc_yaml_is_what_the_stages_generate():
    """Stale → `faceparse stages dvc --write` (after changing a stage's ``dvc`` or src/faceparse/dvc_template.yaml)."""
    assert (REPO / "dvc.yaml").read_text() == dvcgen.generate(REPO, BUILT_IN)
    assert dvcgen.check(REPO / "dvc.yaml", BUILT_IN) is None


def test_dvc_check_exits_1_naming_the_fix(tmp_path, monkeypatch):
    stale = tmp_path / "dvc.yaml"
    stale.write_text((REPO / "dvc.yaml").read_text().replace("record: src/faceparse/labels.py", "record: x.py"))
    monkeypatch.setattr(stages, "_PACKAGES", {n: stages._PACKAGES[n] for n in BUILT_IN})  # no installed plug-in
    monkeypatch.setattr(dvcgen, "code_dir", lambda st, root: f"src/faceparse/stages/{st.name}")
    r = CliRunner().invoke(app, ["stages", "dvc", "--check", "--file", str(stale)])
    assert r.exit_code == 1, r.output
    assert "run `faceparse stages dvc --write`" in r.output and "-        record: x.py" in r.output
    assert CliRunner().invoke(app, ["stages", "dvc", "--write", "--file", str(stale)]).exit_code == 0
    assert CliRunner().invoke(app, ["stages", "dvc", "--check", "--file", str(stale)]).exit_code == 0


def test_a_registered_stage_joins_the_dvc_foreach_lists(toy):
    spec = yaml.safe_load(dvcgen.generate(REPO, [*BUILT_IN, "toy"]))["stages"]
    for step in ("train", "evaluate", "register"):
        assert list(spec[step]["foreach"])[-1] == "toy", step
    train = spec["train"]["foreach"]["toy"]
    assert train["code"] == train["data"] == "tests/fixtures/plugin/toy_stage"     # defaults: its package folder
    assert train["params"] == ["toy.model", "toy.train", "toy.train", "toy.train"]  # padded to the longest list
    assert (train["bundle"], train["run"]) == ("${toy.train.bundle_dir}", "${toy.train.run_dir}")
    assert spec["evaluate"]["foreach"]["toy"]["metrics"] == "${toy.evaluate.metrics_file}"
    assert spec["register"]["foreach"]["toy"]["registry"] == "toy.registry"
    # the built-in entries are unchanged by it
    assert yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]["foreach"]["parser"] == \
        spec["train"]["foreach"]["parser"]


def test_a_stage_that_trains_nothing_is_not_trained_and_params_lists_grow(toy, monkeypatch):
    """The train step's stages are the trainable ones (completion is composed by the template's `compose`);
    a stage reading more params keys than the others widens every entry and the step's params list."""
    assert "completion" not in dvcgen.entries("train", REPO, BUILT_IN)
    assert {"completion"} <= set(dvcgen.entries("evaluate", REPO, BUILT_IN))
    monkeypatch.setattr(type(toy), "dvc", stages.DvcInputs(
        train=stages.TrainInputs(params=("toy.model", "toy.train", "a", "b", "c"))), raising=False)
    spec = yaml.safe_load(dvcgen.generate(REPO, [*BUILT_IN, "toy"]))["stages"]["train"]
    assert spec["do"]["params"][-5:] == [f"${{item.params[{i}]}}" for i in range(5)]
    assert spec["foreach"]["parser"]["params"] == ["model", "loss", "train", "data.label_table", "data.label_table"]


def test_dvc_sees_the_generated_pipeline(repo_root):
    """dvc itself reads the committed file: every registered stage's per-stage steps, nothing else lost."""
    r = subprocess.run([str(Path(sys.executable).parent / "dvc"), "stage", "list"], cwd=repo_root, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    listed = {line.split()[0] for line in r.stdout.splitlines() if line.strip()}
    trained = [n for n in BUILT_IN if get_stage(n).info.trainable]
    assert listed == {"prepare", "validate", "synth3d", "compose", "complete", *(f"train@{n}" for n in trained),
                      *(f"{s}@{n}" for s in ("evaluate", "register") for n in BUILT_IN)}


def test_3d_evaluation_reruns_when_its_fit_or_the_models_it_fits_with_change(repo_root):
    """evaluate@recon3d reads recon3d.fit and the shipped landmark / parser models (fit.landmarks / parser: null):
    dvc must see both, as resolved by dvc itself."""
    stage = Repo(str(repo_root)).stage.collect("evaluate@recon3d")[0]
    params = {k for p in stage.params for k in p.params}
    assert {"recon3d.evaluate", "recon3d.fit", "data.dir"} <= params
    assert "src/faceparse/pretrained" in {str(d.def_path) for d in stage.deps}
    assert get_stage("recon3d").dvc.evaluate.params == ("recon3d.evaluate", "recon3d.fit")


def _conditions(spec: dict) -> set[str]:
    out = set()
    for comp in [spec["root"], *spec["components"].values()]:
        for task in comp.get("dag", {}).get("tasks", {}).values():
            if task.get("triggerPolicy", {}).get("condition"):
                out.add(task["triggerPolicy"]["condition"])
    return out


def test_pipeline_gates_follow_each_stage_direction():
    """Each gated stage: its threshold parameter (min_… when higher is better, max_… when lower), compared
    with ≥ / ≤ as its Info.direction says; the gated number is its primary metric unless it names another."""
    spec, _ = yaml.safe_load_all((REPO / "pipelines" / "faceparse_pipeline.yaml").read_text())
    params = spec["root"]["inputDefinitions"]["parameters"]
    conditions = _conditions(spec)
    gated = [get_stage(n) for n in BUILT_IN if get_stage(n).kfp.gate]
    assert {st.name for st in gated} == set(BUILT_IN)
    for st in gated:
        k, op = st.kfp, ">=" if st.info.direction == "max" else "<="
        assert k.gate.startswith("min_" if st.info.direction == "max" else "max_"), st.name
        assert params[k.gate]["defaultValue"] == k.gate_default
        assert any(c.endswith(f"-Output'] {op} inputs.parameter_values['pipelinechannel--{k.gate}']")
                   for c in conditions), (st.name, op)
    for st in (get_stage(n) for n in BUILT_IN):
        assert (st.name in params) == st.kfp.switch, st.name


def test_a_plugin_stage_joins_the_kfp_pipeline(tmp_path):
    """Compiled with toy_stage installed (its entry point on the path): its own switch, train → evaluate →
    register → promote → package with stage=toy, and no gate (it declares none: promote's floor decides)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN), os.environ.get("PYTHONPATH", "")])}
    env.pop("FACEPARSE_IMAGE", None)
    out = tmp_path / "pipeline.yaml"
    r = subprocess.run([sys.executable, str(REPO / "pipelines" / "compile.py"), "--out", str(out)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    spec, _ = yaml.safe_load_all(out.read_text())
    assert spec["root"]["inputDefinitions"]["parameters"]["toy"]["defaultValue"] is True
    comps = spec["components"]
    toy_dag = next(c["dag"]["tasks"] for c in comps.values()
                   if any(t.get("taskInfo", {}).get("name") == "train toy" for t in c.get("dag", {}).get("tasks", {}).values()))
    names = {t["taskInfo"]["name"] for t in toy_dag.values()}
    assert {"train toy", "evaluate toy", "register toy", "promote toy"} <= names
    assert "inputs.parameter_values['pipelinechannel--toy'] == true" in _conditions(spec)


def test_summary_prints_each_stage_headline(tmp_path):
    """`faceparse stages summary` (the end of `make run`): one line per stage from its evaluation file, the
    stage's own wording; a stage not evaluated says so."""
    results = {
        "parser": {"mean_f1": 0.81234, "miou": 0.7, "n_images": 36},
        "landmarks": {"nme": 0.05, "mean_shape_nme": 0.09, "nme_occluded": None, "nme_visible": 0.04, "n_images": 36},
        "completion": {"f1_occluded_gamma": 0.5, "f1_occluded_alpha": 0.4, "f1_face_gamma": 0.8, "f1_face_alpha": None,
                       "occlusion_iou": 0.3, "n_images": 36},
        "fisn": {"psnr_out": 20.123, "psnr_input": 15.0, "psnr_inpaint": 18.0, "ssim_out": 0.8, "ssim_input": 0.7,
                 "ssim_inpaint": 0.75, "n_occluded_images": 27},
    }
    sets = []
    for name in BUILT_IN:
        f = tmp_path / name / "eval.json"
        f.parent.mkdir()
        if name in results:
            f.write_text(json.dumps({"stage": name, **results[name]}))
        sets += ["--set", f"{'' if name == 'parser' else name + '.'}evaluate.metrics_file={f}"]
    r = CliRunner().invoke(app, ["stages", "summary", "-p", str(REPO / "params.yaml"), *sets])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines[:len(BUILT_IN)] == [
        "parser: test mean F1 0.8123  mIoU 0.7000  (36 test images)",
        "landmarks: test NME 0.0500 (mean shape 0.0900; occluded points None, visible 0.0400)  (36 test images)",
        "completion: F1 inside the occluded face region 0.5000 (parser alone 0.4000); over the face 0.8000 (parser "
        "alone n/a); occlusion mask IoU 0.3000  (36 test images)",
        "de-occlusion: PSNR inside the occluded face region 20.12 dB (occluded input 15.00, cv2.inpaint 18.00); "
        "SSIM 0.80 (input 0.70, inpaint 0.75)  (27 occluded test faces)",
        f"recon3d: not evaluated ({tmp_path / 'recon3d' / 'eval.json'} missing)"]
    assert [n for n in stage_names() if n in BUILT_IN] == BUILT_IN
