"""The CLI's documented exit codes (README "Exit codes"), each checked by running the command:
0 done · 1 the step ran and failed · 2 bad input or params (one red line) · 3 `serve status`: not running ·
4 `rollout auto`: not promoted (tests/integration/test_serving_canary.py)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from faceparse import __version__
from faceparse.cli import app

runner = CliRunner()


def commands_with_set(group, path=()):
    """(command path, command) for every command that takes --set (so reads params). Duck-typed: typer
    carries its own copy of click."""
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from commands_with_set(cmd, (*path, name))
        elif any("--set" in p.opts for p in cmd.params):
            yield (*path, name), cmd


def required_args(cmd, existing_file: str) -> list[str]:
    """Placeholder values for the command's required arguments / options, so that it gets as far as
    reading its params (a path that must exist gets a real file)."""
    out: list[str] = []
    for p in cmd.params:
        if not p.required:
            continue
        value = NUMERIC.get(p.opts[0], existing_file)
        out += [value] if p.param_type_name == "argument" else [p.opts[0], value]
    return out


NUMERIC = {"--percent": "10"}   # required options that are not paths / strings
COMMANDS = sorted(commands_with_set(typer.main.get_command(app)), key=lambda c: c[0])


def test_every_params_reading_command_is_covered():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"train", "evaluate", "data prepare", "predict", "serve start", "rollout auto", "export onnx"} <= names


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_a_mistyped_params_key_exits_2_naming_the_nearest_key(path, cmd, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    args = [*path, *required_args(cmd, str(repo_root / "params.yaml")), "--set", "train.epoch=3"]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, (args, r.output)
    assert "train.epoch" in r.output and "train.epochs" in r.output, r.output


def test_version_prints_and_exits_0():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"faceparse {__version__}"
    # the real entry point too (the console script runs this module)
    p = subprocess.run([sys.executable, "-m", "faceparse", "--version"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and __version__ in p.stdout


def test_serve_status_with_nothing_running_exits_3(tmp_path):
    r = runner.invoke(app, ["serve", "status", "--run-dir", str(tmp_path / "none")])
    assert r.exit_code == 3, r.output
    assert "not running" in r.output
    r = runner.invoke(app, ["serve", "status", "--json", "--run-dir", str(tmp_path / "none")])
    assert r.exit_code == 0 and '"running": false' in r.output   # --json reports instead of failing


def test_a_failed_step_exits_1_and_bad_input_exits_2(tmp_path, real_samples):
    from faceparse.serve.testing import tiny_bundle

    bad = tmp_path / "broken.jpg"
    bad.write_bytes((real_samples / "0.jpg").read_bytes()[:500])
    r = runner.invoke(app, ["predict", "--model", str(tmp_path / "no-such-bundle"), str(bad)])
    assert r.exit_code == 2, r.output                       # a model that does not exist: bad input
    bundle = tiny_bundle(tmp_path / "bundle")
    r = runner.invoke(app, ["predict", "--model", str(bundle), "--out", str(tmp_path / "out"),
                            str(real_samples / "0.jpg"), str(bad)])
    assert r.exit_code == 1, r.output                       # the good photo is written, the broken one named
    assert (tmp_path / "out" / "0_label.png").is_file() and "broken.jpg" in r.output
    r = runner.invoke(app, ["data", "validate", str(tmp_path / "no-dataset")])
    assert r.exit_code == 2, r.output
