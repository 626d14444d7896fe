"""Every shell command README.md shows is accounted for: the quick ones run here as written, in a scratch copy
of the checkout (``../shared`` beside it, as on a fresh clone), and must succeed; each long or external one
names the test that runs it (or why none can). A command the README gains without a place here fails, naming
its README line — so the README cannot drift from what works."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"

# Run here, as written, in README order (within the file: a later command may use an earlier one's output).
RUN = (
    ".venv/bin/faceparse predict ../shared/fixtures/celebamask-hq-samples/0.jpg --out parsed/",
    ".venv/bin/faceparse predict --stage landmarks ../shared/fixtures/celebamask-hq-samples/0.jpg --out points/",
    ".venv/bin/faceparse complete ../shared/fixtures/celebamask-hq-samples/0.jpg --out completed/",
    ".venv/bin/faceparse deocclude ../shared/fixtures/celebamask-hq-samples/0.jpg --out deoccluded/",
    ".venv/bin/faceparse reconstruct ../shared/fixtures/celebamask-hq-samples/0.jpg --out mesh/",
    ".venv/bin/faceparse chain ../shared/fixtures/celebamask-hq-samples/0.jpg --out chain/",
    ".venv/bin/faceparse data prepare",
    ".venv/bin/faceparse data validate data/processed --out-dir data/validation",
    ".venv/bin/faceparse data synth --out data/processed --n 240",
    ".venv/bin/python pipelines/compile.py",
    ".venv/bin/python -m faceparse.launch render --kind trainjob",
)
# Long, or needing a trained model, a server or a cluster: where each one is run instead.
ELSEWHERE = {
    "make run": "tests/integration/test_make_run.py (and CI's .ci/run)",
    "make test": "CI: .ci/run",
    "make test-fast": "a subset of make test",
    "make mutation": "scripts/mutation.py; its targets: tests/code/test_mutation_targets.py",
    ".venv/bin/faceparse train --set": "tests/model/test_train.py::test_cli_train_and_friendly_errors",
    ".venv/bin/faceparse data prepare -p configs/paper.yaml": "the same command at 256²: tests/data",
    "source .venv/bin/activate && dvc repro": "make run is dvc repro: tests/integration/test_make_run.py",
    "dvc remote": "tests/integration/test_s3_dvc.py (SeaweedFS as the S3 server)",
    "dvc push": "tests/integration/test_s3_dvc.py",
    ".venv/bin/faceparse train": "tests/model/test_train.py, tests/integration/test_make_run.py",
    ".venv/bin/torchrun": "tests/integration/test_torchrun.py",
    ".venv/bin/faceparse evaluate": "tests/model/test_evaluate.py, tests/code/test_photo_eval.py",
    ".venv/bin/faceparse register": "tests/integration/test_registry.py",
    ".venv/bin/faceparse promote": "tests/integration/test_registry.py",
    ".venv/bin/faceparse rollback": "tests/integration/test_registry.py",
    "source .venv/bin/activate && cp": "the served photo: tests/integration/test_readme_requests.py",
    "faceparse serve": "tests/integration/test_serving.py",
    "curl": "tests/integration/test_readme_requests.py (the request as written)",
    "faceparse rollout auto": "tests/integration/test_serving_canary.py",
    "faceparse export onnx": "tests/model/test_onnx.py",
    ".venv/bin/faceparse ui page": "tests/integration/test_ui_page.py (a real browser)",
    ".venv/bin/python pipelines/run_local.py": "tests/integration/test_kfp_local.py",
    ".venv/bin/python pipelines/submit.py": "needs a Kubeflow Pipelines host (--host URL): none here",
    ".venv/bin/faceparse train --stage landmarks --launcher trainjob": "needs a cluster: the TrainJob it submits "
                                                                        "is tests/code/test_trainjob.py's",
}


def readme_commands(text: str) -> list[tuple[int, str]]:
    """(line number, command) for each command in the ```bash blocks: continuations joined, comments cut."""
    out, block, pending = [], False, None
    for no, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            block = line.strip() in ("```bash", "```sh") if not block else False
            continue
        if not block:
            continue
        cmd = re.sub(r"\s+#\s.*$", "", line.rstrip()) if not line.lstrip().startswith("#") else ""
        if pending:
            pending = (pending[0], pending[1] + " " + cmd.strip())
        elif cmd.strip():
            pending = (no, cmd.strip())
        if pending and not pending[1].endswith("\\"):
            out.append(pending)
            pending = None
        elif pending:
            pending = (pending[0], pending[1][:-1].rstrip())
    return out


def place(cmd: str) -> str | None:
    """"run", or the test that runs it elsewhere (the longest matching prefix wins), or None."""
    if cmd in RUN:
        return "run"
    hits = [k for k in ELSEWHERE if cmd == k or cmd.startswith(k + " ")]
    return ELSEWHERE[max(hits, key=len)] if hits else None


def test_readme_commands_parse_as_written():
    cmds = dict((c, n) for n, c in readme_commands("```bash\na \\\n  --b  # note\n# only a comment\nc\n```\n"
                                                   "```python\nx = 1\n```\n"))
    assert cmds == {"a --b": 2, "c": 5}


def test_every_readme_command_is_run_here_or_names_its_test():
    cmds = readme_commands(README.read_text())
    unplaced = [f"README.md:{n}: {c}" for n, c in cmds if place(c) is None]
    assert not unplaced, "commands with no place in tests/integration/test_readme_commands.py:\n" + "\n".join(unplaced)
    shown = {c for _, c in cmds}
    gone = [c for c in RUN if c not in shown]
    assert not gone, f"RUN lists commands the README no longer shows: {gone}"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """The checkout's files (tracked and untracked, not ignored) in a new folder, ``../shared`` beside it,
    ``.venv`` linked: what a fresh clone after `make venv` holds."""
    root = tmp_path_factory.mktemp("readme") / "main"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout.splitlines()
    for f in files:
        if (REPO / f).is_file():
            (root / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, root / f)
    (root / ".venv").symlink_to(REPO / ".venv")
    (root.parent / "shared").symlink_to(REPO.parent / "shared")
    return root


def test_the_quick_readme_commands_run_as_written(scratch):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACEPARSE_", "MLFLOW_TRACKING"))}
    for no, cmd in readme_commands(README.read_text()):
        if place(cmd) != "run":
            continue
        r = subprocess.run(cmd, shell=True, cwd=scratch, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"README.md:{no}: `{cmd}` exited {r.returncode}:\n{(r.stdout + r.stderr)[-3000:]}"
    assert (scratch / "parsed" / "0_overlay.png").is_file() and (scratch / "points" / "0_points.json").is_file()
    assert (scratch / "data" / "processed" / "manifest.parquet").is_file()
