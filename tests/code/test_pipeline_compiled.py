"""pipelines/: the committed compiled pipeline is current, carries the PyTorchJob GPU settings and the
secrets, runs every step in the project image without run-time pip, and submit.py fails clearly when
the Kubeflow Pipelines host is unreachable."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # components/ and pipelines/ live at the repo root
    sys.path.insert(0, str(REPO))
COMMITTED = REPO / "pipelines" / "faceparse_pipeline.yaml"


def _env():
    env = dict(os.environ)
    env.pop("FACEPARSE_IMAGE", None)  # the committed YAML uses the default image
    return env


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[dict, dict]:
    """(pipeline spec, kubernetes platform spec) of the committed YAML."""
    spec, platform = list(yaml.safe_load_all(COMMITTED.read_text()))
    return spec, platform


def test_committed_yaml_is_current(tmp_path):
    """Recompile to a temp file: byte-identical to pipelines/faceparse_pipeline.yaml (compile.py sorts the
    one volatile thing kfp writes: the header comment's dict defaults). Stale → run
    `python pipelines/compile.py` and commit the result."""
    out = tmp_path / "pipeline.yaml"
    r = subprocess.run([sys.executable, str(REPO / "pipelines" / "compile.py"), "--out", str(out)],
                       capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.read_text() == COMMITTED.read_text(), (
        "pipelines/faceparse_pipeline.yaml is stale: run `python pipelines/compile.py` and commit it")


def test_compiled_yaml_loads_back_with_kfp():
    """Valid YAML that kfp itself loads (kfp's header comment would otherwise break it: see compile.py)."""
    from kfp import components

    comp = components.load_component_from_file(str(COMMITTED))
    assert comp.name == "faceparse"
    assert {"params_yaml", "overrides", "launcher", "pytorchjob", "raw_uri"} <= set(comp.component_spec.inputs)


def test_parameters_default_from_params_yaml(compiled):
    spec, _ = compiled
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["params_yaml"]["defaultValue"] == (REPO / "params.yaml").read_text()
    assert params["overrides"]["parameterType"] == "LIST"
    assert params["launcher"]["defaultValue"] == "pytorchjob"


def test_pytorchjob_gpu_settings_are_in_the_compiled_yaml(compiled):
    spec, _ = compiled
    job = spec["root"]["inputDefinitions"]["parameters"]["pytorchjob"]["defaultValue"]
    from faceparse.launch.settings import PYTORCHJOB_DEFAULTS

    assert job["gpus_per_worker"] == PYTORCHJOB_DEFAULTS["gpus_per_worker"] == 8
    assert job["workers"] == 2 and job["gpu_resource"] == "nvidia.com/gpu"
    assert job["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert job["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert job["nccl_env"]["TORCH_NCCL_ASYNC_ERROR_HANDLING"] == "1"
    # the train task receives it (and the launcher) from the pipeline parameters
    text = COMMITTED.read_text()
    assert "componentInputParameter: pytorchjob" in text and "componentInputParameter: launcher" in text
    train_src = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["command"][-1]
    assert "train_distributed" in train_src


def test_every_step_runs_in_the_project_image_without_pip(compiled):
    spec, _ = compiled
    from faceparse.launch.settings import DEFAULT_IMAGE

    executors = spec["deploymentSpec"]["executors"]
    per_stage = {"train", "evaluate", "register", "promote", "package"}   # once per model stage (-2: landmarks)
    composed = {"evaluate-3", "register-3", "promote-3", "package-3"}     # map completion: composed, not trained
    fisn = {"train-3", "evaluate-4", "register-4", "promote-4", "package-4"}  # the generator: trained again
    recon3d = {"synth3d", "validate-2", "train-4", "evaluate-5", "register-5", "promote-5", "package-5"}  # its own set
    assert {e.removeprefix("exec-") for e in executors} == {
        "prepare", "validate", "validation-failed", *per_stage, *{f"{s}-2" for s in per_stage}, "compose",
        *composed, "complete", *fisn, *recon3d}
    for name, ex in executors.items():
        c = ex["container"]
        assert c["image"] == DEFAULT_IMAGE, name
        body = " ".join(c["command"] + c.get("args", []))
        assert "pip install" not in body and "pip3 install" not in body, name
        assert "import faceparse" in body or "from faceparse" in body or name == "exec-validation-failed", name


def test_dag_gates(compiled):
    """validate → If(passed) train…, Else validation_failed; If(mean_f1 ≥ min) promote; If(promoted) package."""
    spec, _ = compiled
    comps = spec["components"]
    conditions = {}  # condition expression → task names inside that condition's sub-DAG
    for comp in [spec["root"], *comps.values()]:
        for task in comp.get("dag", {}).get("tasks", {}).values():
            cond = task.get("triggerPolicy", {}).get("condition")
            if cond:
                conditions[cond] = set(comps[task["componentRef"]["name"]]["dag"]["tasks"])
    passed = "inputs.parameter_values['pipelinechannel--validate-passed'] == true"
    assert {"train", "evaluate", "register"} <= conditions[passed]
    assert conditions[f"!({passed})"] == {"validation-failed"}
    gate = ("inputs.parameter_values['pipelinechannel--evaluate-Output'] >= "
            "inputs.parameter_values['pipelinechannel--min_mean_f1']")
    assert "promote" in conditions[gate]
    assert conditions["inputs.parameter_values['pipelinechannel--promote-Output'] == true"] == {"package"}
    # the landmark stage: the same path under its own switch, gated the other way (NME: lower is better)
    lm = conditions["inputs.parameter_values['pipelinechannel--landmarks'] == true"]
    assert {"train-2", "evaluate-2", "register-2"} <= lm
    lm_gate = ("inputs.parameter_values['pipelinechannel--evaluate-2-Output'] <= "
               "inputs.parameter_values['pipelinechannel--max_nme']")
    assert "promote-2" in conditions[lm_gate]
    assert conditions["inputs.parameter_values['pipelinechannel--promote-2-Output'] == true"] == {"package-2"}
    # map completion: composed from both registered models inside the landmark switch, gated on its F1
    assert {"compose", "evaluate-3", "register-3", "complete"} <= lm
    c_gate = ("inputs.parameter_values['pipelinechannel--evaluate-3-Output'] >= "
              "inputs.parameter_values['pipelinechannel--min_completion_f1']")
    assert "promote-3" in conditions[c_gate]
    lm_tasks = next(c for c in comps.values() if "compose" in c.get("dag", {}).get("tasks", {}))["dag"]["tasks"]
    assert set(lm_tasks["compose"]["dependentTasks"]) >= {"register-2"}
    # the de-occlusion generator: under its own switch inside the landmark one, trained carrying the composed
    # completion model and its registration record, gated on its PSNR gain over the input as it is
    fisn = conditions["inputs.parameter_values['pipelinechannel--fisn'] == true"]
    assert {"train-3", "evaluate-4", "register-4"} <= fisn
    f_gate = ("inputs.parameter_values['pipelinechannel--evaluate-4-Output'] >= "
              "inputs.parameter_values['pipelinechannel--min_fisn_psnr_gain']")
    assert "promote-4" in conditions[f_gate]
    assert conditions["inputs.parameter_values['pipelinechannel--promote-4-Output'] == true"] == {"package-4"}
    f_tasks = next(c for c in comps.values() if "train-3" in c.get("dag", {}).get("tasks", {}))["dag"]["tasks"]
    carried = f_tasks["train-3"]["inputs"]["artifacts"]
    assert carried["carry"] == {"componentInputArtifact": "pipelinechannel--compose-model"}
    assert carried["carry_registered"] == {"componentInputArtifact": "pipelinechannel--register-3-registered"}
    gate_metric = f_tasks["evaluate-4"]["inputs"]["parameters"]["gate_metric"]
    assert gate_metric == {"runtimeValue": {"constant": "psnr_gain_db"}}
    # 3D reconstruction: under its own switch inside the fisn one, on its own rendered set, its occluded test
    # photos de-occluded through the generator just trained; gated on the clean p90 (mm: lower is better)
    r3 = conditions["inputs.parameter_values['pipelinechannel--recon3d'] == true"]
    assert {"synth3d", "validate-2", "train-4", "evaluate-5", "register-5"} <= r3
    r_gate = ("inputs.parameter_values['pipelinechannel--evaluate-5-Output'] <= "
              "inputs.parameter_values['pipelinechannel--max_recon3d_p90_mm']")
    assert "promote-5" in conditions[r_gate]
    r_tasks = next(c for c in comps.values() if "train-4" in c.get("dag", {}).get("tasks", {}))["dag"]["tasks"]
    assert r_tasks["train-4"]["inputs"]["artifacts"]["dataset"]["taskOutputArtifact"]["producerTask"] == "synth3d"
    assert r_tasks["evaluate-5"]["inputs"]["artifacts"]["deocclude"] == {"componentInputArtifact": "pipelinechannel--train-3-model"}
    assert r_tasks["evaluate-5"]["inputs"]["parameters"]["stage"] == {"runtimeValue": {"constant": "recon3d"}}
    valid = next(c for c in comps.values() if "train" in c.get("dag", {}).get("tasks", {}))["dag"]["tasks"]
    assert valid["evaluate"]["dependentTasks"] == ["train"]
    assert "prepare" not in valid and "validate" not in valid  # both run before the gate


def test_secrets_reach_the_steps_as_env(compiled):
    _, platform = compiled
    execs = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]

    def secrets(name):
        return {s["secretName"]: {m["envVar"] for m in s["keyToEnv"]} for s in execs[name].get("secretAsEnv", [])}

    assert secrets("exec-train")["faceparse-mlflow"] == {"MLFLOW_TRACKING_URI"}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "FACEPARSE_S3_ENDPOINT"} <= secrets("exec-train")["faceparse-s3"]
    assert secrets("exec-train-3") == secrets("exec-train")   # the fisn training launches the same way
    for step in ("exec-evaluate", "exec-register", "exec-promote", "exec-package"):
        assert "faceparse-mlflow" in secrets(step), step
    assert "faceparse-s3" in secrets("exec-prepare")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with-block ends: nothing listens there


def test_submit_to_unreachable_host_fails_with_one_clear_line():
    host = f"http://127.0.0.1:{_closed_port()}"
    r = subprocess.run([sys.executable, str(REPO / "pipelines" / "submit.py"), "--host", host, "--timeout", "3"],
                       capture_output=True, text=True, timeout=60, env=_env())
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: cannot reach Kubeflow Pipelines at " + host)
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_submit_bad_input_is_exit_2(tmp_path):
    from pipelines.submit import SubmitError, parse_args_kv, submit

    with pytest.raises(SubmitError, match="not found"):
        submit("http://127.0.0.1:1", package=tmp_path / "missing.yaml")
    with pytest.raises(SubmitError, match="name=value"):
        parse_args_kv(["launcher"])
    assert parse_args_kv(['pytorchjob={"workers": 4}', "launcher=local"]) == {
        "pytorchjob": {"workers": 4}, "launcher": "local"}
