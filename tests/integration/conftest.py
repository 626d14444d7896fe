"""Fixtures the integration tests share."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kfp_runs import small_run  # noqa: E402


@pytest.fixture(scope="session")
def subprocess_pipeline(tmp_path_factory):
    """The whole pipeline, every stage, on the tiny set in this venv (SubprocessRunner), run once: (run dir,
    task outputs, tracking URI). A 1-epoch generator may well be below the occluded input: its gate is open
    (min_fisn_psnr_gain=-100) to run promote / package."""
    return small_run("subprocess", tmp_path_factory.mktemp("kfp-subprocess"), min_fisn_psnr_gain=-100.0)
