"""A stage from another installed package joins by its package alone (entry point group ``faceparse.stages``):
it is listed, its params section is checked like the built-in ones, its verbs join the CLI and its codec the
served stages — with no edit to faceparse. (The whole path — train → … → served answer → web page — for such
a stage is issue #30's remaining proof.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "fixtures" / "plugin"   # toy_stage + its entry point


@pytest.fixture(scope="module")
def plugin_env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN), os.environ.get("PYTHONPATH", "")])}


def run(args: list[str], env, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_stage_is_listed_and_its_verb_joins_the_cli(plugin_env, repo_root):
    faceparse = [sys.executable, "-m", "faceparse"]
    listed = run([*faceparse, "stages", "--json"], plugin_env, repo_root)
    assert listed.returncode == 0, listed.stderr[-2000:]
    toy = {r["name"]: r for r in json.loads(listed.stdout)}["toy"]
    assert (toy["primary_metric"], toy["direction"], toy["model_name"]) == ("mae", "min", "toy-face-share")
    hello = run([*faceparse, "toy-hello"], plugin_env, repo_root)
    assert hello.returncode == 0 and "hello from toy" in hello.stdout, hello.stderr[-2000:]


def test_its_params_section_is_checked_and_its_codec_served(plugin_env, repo_root, tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent("""
        from faceparse.config import ConfigError, load_params
        from faceparse.serve.codecs import codec_for, served_stages
        load_params("params.yaml", ["toy.model.width=8"])
        try:
            load_params("params.yaml", ["toy.model.widht=8"])
        except ConfigError as e:
            print("refused:", e)
        share = b'{"face_share": 0.25}'
        print("served:", "toy" in served_stages(), codec_for("toy").agreement(share, share))
        """))
    out = run([sys.executable, str(probe)], plugin_env, repo_root)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "refused: --set toy.model.widht=8: unknown key toy.model.widht (did you mean toy.model.width?)" in out.stdout
    assert "served: True 1.0" in out.stdout


def test_without_the_package_nothing_changes(repo_root):
    listed = run([sys.executable, "-m", "faceparse", "stages", "--json"], dict(os.environ), repo_root)
    assert [r["name"] for r in json.loads(listed.stdout)] == ["parser", "landmarks", "completion", "fisn", "recon3d"]
