"""faceparse.runtime: the allocator setting the entry points apply, checked by its effect (page faults)."""
import json
import os
import subprocess
import sys

import pytest

from faceparse.runtime import DISABLE_ENV

# Four forward passes of the tiny model at batch 4 (its 256² activations are 32 MB, over glibc's largest
# dynamic mmap threshold); report the minor page faults of the last pass, once allocations have settled.
# Transparent huge pages fault 2 MB at a time, so whether the kernel hands them out (THP "always", or
# "madvise" + THP_MEM_ALLOC_ENABLE=1: measured 50k → 7.8k faults per default pass) would decide the count:
# the probe opts out of THP first (prctl PR_SET_THP_DISABLE overrides both), measuring only the allocator.
PROBE = """
import ctypes, json, resource, sys
thp_off = ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0) == 0   # PR_SET_THP_DISABLE
import torch
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
                  "faults": faults() - before, "thp_off": thp_off}))
"""


def probe(mode: str, **env) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout
    return json.loads(out.strip().splitlines()[-1])


def thp_mode() -> str:
    try:
        text = open("/sys/kernel/mm/transparent_hugepage/enabled").read()
        return text[text.index("[") + 1:text.index("]")]
    except (OSError, ValueError):
        return "unknown"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tuned_allocator_reuses_large_blocks():
    default, tuned = probe("default"), probe("tune")
    if not (default["thp_off"] and tuned["thp_off"]) and thp_mode() == "always":
        pytest.skip(f"cannot opt out of transparent huge pages (prctl PR_SET_THP_DISABLE refused; THP "
                    f"{thp_mode()!r}): page faults would count 2 MB pages, not the allocator's reuse")
    assert tuned["applied"] and tuned["again"]  # idempotent
    # default glibc: every 32 MB activation is a fresh mmap (~50k page faults per pass measured)
    assert default["faults"] > 10_000
    assert tuned["faults"] < default["faults"] / 10


def test_tuning_can_be_switched_off():
    assert probe("tune", **{DISABLE_ENV: "1"})["applied"] is False
