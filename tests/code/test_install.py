"""`make venv`'s torch step on a machine without a local wheel directory: the CPU wheel pinned in
requirements.lock comes from $TORCH_INDEX (PyTorch's CPU index by default). Here the index is a local
PEP 503 page pointing at this machine's wheel, so the test runs offline; pip runs for real (--dry-run)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def local_torch_wheel(spec: str) -> Path | None:
    version = spec.split("==", 1)[1]
    dirs = [d for d in os.environ.get("PIP_FIND_LINKS", "/opt/wheels").split() if Path(d).is_dir()]
    return next((w for d in dirs for w in Path(d).glob(f"torch-{version}-*.whl")), None)


def test_lock_pins_the_cpu_build_and_the_fallback_index_supplies_it(repo_root, tmp_path):
    spec = next(line for line in (repo_root / "requirements.lock").read_text().splitlines() if line.startswith("torch=="))
    assert spec.endswith("+cpu"), spec          # no CUDA wheels (and their 2 GB of nvidia-* packages) on CPU machines
    wheel = local_torch_wheel(spec)
    if wheel is None:
        pytest.skip("no local torch wheel on this machine to build a stand-in index from")
    page = tmp_path / "simple" / "torch"
    page.mkdir(parents=True)
    (page / "index.html").write_text(f'<a href="{wheel.as_uri()}">{wheel.name}</a>\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, TORCH_INDEX=(tmp_path / "simple").as_uri())   # a "normal" machine
    r = subprocess.run(["bash", str(repo_root / "scripts" / "install_torch.sh"), sys.executable, "--dry-run",
                        "--ignore-installed"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "no local wheel" in r.stderr and f"Would install torch-{spec.split('==')[1]}" in r.stdout, r.stdout
