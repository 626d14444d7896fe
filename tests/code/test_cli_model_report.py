"""`faceparse model-report` against the paper's Table 4 / Table 6 (MACs counted by torch's counter)."""
import json
import subprocess
import sys

PAPER_GMACS = {"64": 27.44, "96": 32.25, "128": 39.0, "192": 58.24, "256": 85.2}


def test_model_report_paper_preset_matches_the_paper(repo_root):
    out = subprocess.run([sys.executable, "-m", "faceparse", "model-report", "--preset", "paper", "--classes", "19",
                          "--json"], cwd=repo_root, capture_output=True, text=True, check=True).stdout
    rep = json.loads(out)
    assert abs(rep["params"] - 2.29e6) / 2.29e6 < 0.01
    assert set(rep["gmacs"]) == {"64", "96", "128", "192", "256", "512"}
    for size, paper in PAPER_GMACS.items():
        assert abs(rep["gmacs"][size] - paper) / paper < 0.03, (size, rep["gmacs"][size], paper)
    # what actually runs is the factorised first layer: strictly fewer MACs, same function
    assert all(rep["gmacs_factorized"][s] < rep["gmacs"][s] for s in rep["gmacs"])


def test_model_report_bad_preset_is_a_clear_error(repo_root):
    r = subprocess.run([sys.executable, "-m", "faceparse", "model-report", "--preset", "huge"], cwd=repo_root,
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert "model.preset='huge'" in r.stderr and "paper" in r.stderr
