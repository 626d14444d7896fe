"""faceparse.runtime: the allocator setting the entry points apply, checked by its effect (page faults)."""
import json
import os
import subprocess
import sys

import pytest

from faceparse.runtime import DISABLE_ENV

# Four forward passes of the tiny model at batch 4 (its 256² activations are 32 MB, over glibc's largest
# dynamic mmap threshold); report the minor page faults of the last pass, once allocations have settled.
PROBE = """
import json, resource, sys, torch
from faceparse.config import load_params, model_config
from faceparse.models import build_model
from faceparse.runtime import tune_cpu_allocator
applied = tune_cpu_allocator() if sys.argv[1] == "tune" else False
torch.set_num_threads(1)
model = build_model(model_config(load_params(overrides=["model.preset=tiny"])), 19).eval()
x = torch.randn(4, 3, 256, 256)
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
with torch.inference_mode():
    for _ in range(3):
        model(x, 64)
    before = faults()
    model(x, 64)
print(json.dumps({"applied": applied, "again": tune_cpu_allocator() if applied else None,
                  "faults": faults() - before}))
"""


def probe(mode: str, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tuned_allocator_reuses_large_blocks():
    default, tuned = probe("default"), probe("tune")
    assert tuned["applied"] and tuned["again"]  # idempotent
    # default glibc: every 32 MB activation is a fresh mmap (~50k page faults per pass measured)
    assert default["faults"] > 10_000
    assert tuned["faults"] < default["faults"] / 10


def test_tuning_can_be_switched_off():
    assert probe("tune", **{DISABLE_ENV: "1"})["applied"] is False
