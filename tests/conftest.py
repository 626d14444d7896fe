import os
from pathlib import Path

import pytest

from faceparse import stages

REPO = Path(__file__).resolve().parents[1]
SHARED_SAMPLES = REPO.parent / "shared" / "fixtures" / "celebamask-hq-samples"

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def real_samples() -> Path:
    """The 4 real CelebAMask-HQ pairs from shared/ (present in CI: shared/ lies beside the clone)."""
    if not SHARED_SAMPLES.is_dir():
        pytest.fail(f"shared fixtures missing: {SHARED_SAMPLES} (CI clones shared/ beside the repo)")
    return SHARED_SAMPLES


@pytest.fixture(autouse=True)
def _stage_registry_restored():
    """Each test sees the stage registry as the session found it: a test that registers a stage (or discovers
    the toy plug-in's entry point while tests/fixtures/plugin is on sys.path) leaves nothing behind."""
    packages, discovered = dict(stages._PACKAGES), list(stages._DISCOVERED)
    yield
    stages._PACKAGES.clear()
    stages._PACKAGES.update(packages)
    stages._DISCOVERED[:] = discovered
