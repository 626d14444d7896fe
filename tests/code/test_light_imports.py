"""The light doors stay light: the command line (every command module and each stage's `cli`, `params`), the web
page in endpoint mode (each stage's `ui` card) and the canary router (each stage's `codec`) start without
importing torch or the other heavy libraries — which is why the imports that bring them sit inside the functions
that need them (issue #30). Checked in a fresh interpreter, since this one has imported everything."""
from __future__ import annotations

import json
import subprocess
import sys

from faceparse.stages import package_of, stage_names

HEAVY = ("torch", "mlflow", "great_expectations", "matplotlib", "scipy", "pyarrow", "onnxruntime", "albumentations",
         "boto3", "kfp", "dvc")
LIGHT = ["faceparse", "faceparse.cli", "faceparse.ui.app", "faceparse.serve.router", "faceparse.api"]


def _loaded_after(modules: list[str]) -> list[str]:
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}:\n"
            "    try:\n        importlib.import_module(m)\n"
            "    except ModuleNotFoundError as e:\n        if e.name != m: raise\n"
            f"print(json.dumps(sorted(h for h in {HEAVY!r} if h in sys.modules)))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_the_cli_the_page_and_the_router_start_without_heavy_libraries():
    per_stage = [f"{package_of(s)}.{part}" for s in stage_names() for part in ("cli", "params", "ui", "codec")]
    assert _loaded_after(LIGHT + per_stage) == []


def test_loading_a_bundle_needs_no_evaluation_or_training_data_library():
    """A served worker and `faceparse.load` import every stage's adapter to rebuild a model: torch, not pandas,
    albumentations, matplotlib or scipy (a worker that imports them takes seconds longer to be READY)."""
    mods = ["faceparse.bundle", "faceparse.serve.codecs"] + [f"{package_of(s)}.{p}" for s in stage_names()
                                                             for p in ("stage", "codec")]
    assert set(_loaded_after(mods)) <= {"torch"}


def test_the_check_sees_a_heavy_import():
    assert "torch" in _loaded_after(["faceparse.chain"])
