"""The thread governor (faceparse.runtime), checked by effect: in a fresh process set up the way each entry
point sets itself up (CLI root, kfp step params, TorchServe handler, torchrun worker), compute steps with
`tick()` between them and read torch's thread count — 1 beside a busy competitor on a 2-core machine, all
cores when quiet; never changed for a process no entry point owns, nor with an explicit OMP_NUM_THREADS."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from faceparse import runtime

SETUPS = {
    "cli": "from faceparse.cli import _root; _root(False)",
    "kfp": "from faceparse.launch.params import whole_params; import pathlib; "
           "whole_params(pathlib.Path('params.yaml').read_text())",
    "handler": "from faceparse.runtime import own_process; own_process()   # what FaceParseHandler.initialize calls",
    "library": "pass   # the Python API: nobody owns the process",
}
PROBE = """
{setup}
import time, torch
from faceparse.runtime import tick
x = torch.randn(256, 256)
t0 = time.monotonic()
while time.monotonic() - t0 < 3.0:
    for _ in range(20):
        x = torch.tanh(x @ x / 256)
    tick()
print(torch.get_num_threads())
"""


def threads_after(setup: str, busy: bool, repo_root, **env) -> int:
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "FACEPARSE_THREADS")}
        out = subprocess.run([sys.executable, "-c", PROBE.format(setup=SETUPS[setup])], cwd=repo_root,
                             env={**base, **env}, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return int(out.stdout.strip().splitlines()[-1])
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()


needs_two = pytest.mark.skipif(runtime.available_cpus() < 2, reason="needs 2 CPUs")


@needs_two
@pytest.mark.parametrize("setup", ["cli", "kfp", "handler"])
def test_entry_points_drop_to_the_free_cores_beside_a_busy_process(setup, repo_root):
    assert threads_after(setup, busy=True, repo_root=repo_root) == runtime.available_cpus() - 1


@needs_two
def test_library_use_is_left_alone_and_an_explicit_setting_wins(repo_root):
    """Independent of the machine's load, so it never skips. What a quiet machine gets (every core) is the
    governor's decision on a measured load (test_governor_sets_threads_from_the_others_cpu_use below) and is
    measured end to end by scripts/bench_shared_cpu.py (its quiet runs print their thread count)."""
    untouched = threads_after("library", busy=True, repo_root=repo_root)
    assert untouched == threads_after("library", busy=False, repo_root=repo_root) >= 2
    assert threads_after("cli", busy=True, repo_root=repo_root, OMP_NUM_THREADS="2") == 2      # pinned
    assert threads_after("cli", busy=True, repo_root=repo_root, FACEPARSE_THREADS="native") >= 2


def test_governor_sets_threads_from_the_others_cpu_use(monkeypatch):
    samples = iter([(0.0, 0.0, 0.0), (1.0, 1.9, 1.0), (2.0, 3.9, 2.0), (3.0, 4.0, 2.05), (4.0, 4.0, 2.05)])
    monkeypatch.setattr(runtime, "_cpu_sample", lambda: next(samples))
    monkeypatch.setattr(time, "monotonic", lambda: 10.0**6)   # every tick is due
    before = torch.get_num_threads()
    try:
        gov = runtime.ThreadGovernor(2)
        gov.tick()                 # others used 0.9 cores → 1 thread
        assert torch.get_num_threads() == 1
        gov.tick()                 # others 1.0 → still 1
        assert torch.get_num_threads() == 1
        gov.tick()                 # others 0.05 → both cores again
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    g4 = runtime.ThreadGovernor(4)
    assert [g4.free_cores(o) for o in (0.0, 0.6, 0.8, 2.0, 3.9, 9.0)] == [4, 3, 3, 2, 1, 1]


def test_governor_ignores_a_window_it_was_idle_through(monkeypatch):
    """A server idle between requests: the long window since its last tick shows what others did meanwhile
    (here 2 busy cores), not what the machine does now — threads stay; the next, fresh window decides. A long
    window we computed through (a slow step) is judged as any other."""
    samples = iter([(0.0, 0.0, 0.0), (30.0, 60.0, 0.0), (31.0, 61.95, 0.9), (32.0, 63.9, 1.8),
                    (40.0, 79.9, 9.8), (48.0, 97.8, 25.7)])
    monkeypatch.setattr(runtime, "_cpu_sample", lambda: next(samples))
    monkeypatch.setattr(time, "monotonic", lambda: 10.0**6)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        gov = runtime.ThreadGovernor(2)
        gov.tick()                 # 30 s window, others 2 cores: stale, kept
        assert torch.get_num_threads() == 2
        gov.tick()                 # 1 s window, others 1.05 cores → 1 thread
        assert torch.get_num_threads() == 1
        gov.tick()                 # others 1.05 → still 1
        assert torch.get_num_threads() == 1
        gov.tick()                 # a long window but we computed through it (8 s, 1 core): judged, others 1.0
        assert torch.get_num_threads() == 1
        gov.tick()                 # 8 s of our compute on 2 cores, others 0.01 → both cores
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_available_cpus_is_the_affinity_mask():
    assert runtime.available_cpus() <= len(os.sched_getaffinity(0))
