"""Outputs built in a staging folder and renamed into place keep a plain mkdir's permissions: a bundle or a
dataset saved by faceparse is readable by another user (a serving container's, a shared store's readers);
mkdtemp's 0700 made it unreadable (found serving a bundle from the serve image)."""
from __future__ import annotations

import os
import stat

import numpy as np

from faceparse.data.synth import write_dataset
from faceparse.serve.testing import tiny_bundle
from faceparse.staging import staging_dir


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_staging_folder_gets_a_plain_mkdirs_mode(tmp_path):
    os.mkdir(tmp_path / "plain")
    made = staging_dir(tmp_path / "target", ".tmp-")
    assert made.parent == tmp_path and made.name.startswith(".target.tmp-")
    assert _mode(made) == _mode(tmp_path / "plain")


def test_a_saved_bundle_and_dataset_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        bundle = tiny_bundle(tmp_path / "bundle", input_size=64)
        data = write_dataset(tmp_path / "ds", n=2, size=32, seed=0, progress=False)
    finally:
        os.umask(old)
    for folder in (bundle, data):
        assert _mode(folder) == 0o755, oct(_mode(folder))
    assert np.all([_mode(f) & 0o004 for f in bundle.iterdir()])
