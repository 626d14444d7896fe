"""The ``local`` launcher: torchrun (``python -m torch.distributed.run``, same interpreter) with N processes
on this machine, each running faceparse.launch.process; also the torchrun command the cluster pods run
(faceparse.launch.worker) and :func:`tee`, which streams a command's output and keeps its tail."""
from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

from .params import write_params


def tee(cmd: list[str], env: Mapping[str, str], cwd: str | os.PathLike | None = None, keep: int = 60) -> tuple[int, str]:
    """Run cmd, streaming its output to ours; (return code, last ``keep`` lines)."""
    tail: collections.deque[str] = collections.deque(maxlen=keep)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(env),
                          cwd=cwd, bufsize=1, errors="replace") as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            tail.append(line.rstrip("\n"))
        rc = proc.wait()
    sys.stdout.flush()
    return rc, "\n".join(tail)


def torchrun_command(nproc: int | str, params_file: Path, result_file: Path, *, nnodes: int | str = 1,
                     node_rank: int | str = 0, master_addr: str | None = None,
                     master_port: int | str | None = None) -> list[str]:
    """``torchrun`` as ``python -m torch.distributed.run`` (same interpreter; no PATH lookup), each process
    running the train step (faceparse.launch.process)."""
    cmd = [sys.executable, "-m", "torch.distributed.run"]
    if master_addr is None:
        cmd += ["--standalone", "--nnodes", "1"]
    else:
        cmd += ["--nnodes", str(nnodes), "--node-rank", str(node_rank), "--master-addr", master_addr,
                "--master-port", str(master_port or 23456)]
    cmd += ["--nproc-per-node", str(nproc)]
    return cmd + ["-m", "faceparse.launch.process", "--params", str(params_file), "--result", str(result_file)]


def run_torchrun(params: dict[str, Any], nproc: int = 2, workdir: str | os.PathLike | None = None,
                 torchrun_args: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """torchrun ``nproc`` processes of the train step on this machine; raise with the log tail on failure."""
    nproc = int(nproc)
    if nproc < 1:
        raise ValueError(f"nproc must be ≥ 1, got {nproc}")
    own = workdir is None
    wd = Path(tempfile.mkdtemp(prefix="faceparse-torchrun-")) if own else Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    params_file = write_params(params, wd / "params.yaml")
    result_file = wd / "result.json"
    result_file.unlink(missing_ok=True)
    cmd = torchrun_command(nproc, params_file, result_file, **dict(torchrun_args or {}))
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    print(f"[faceparse.launch] {' '.join(cmd)}", flush=True)
    rc, tail = tee(cmd, env)
    if rc != 0:
        raise RuntimeError(f"distributed training failed: torchrun ({nproc} processes) exited with {rc}; "
                           f"last output:\n{tail}")
    if not result_file.is_file():
        raise RuntimeError(f"torchrun exited 0 but rank 0 wrote no result ({result_file}); last output:\n{tail}")
    return json.loads(result_file.read_text())
