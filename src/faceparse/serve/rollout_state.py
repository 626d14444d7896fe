"""The rollout state file (``<run_dir>/rollout.json``): which version is stable, which is the canary, its
share, the mirror fraction and the history. Written atomically by the rollout steps, polled by the router,
reset by a server start — its own module so that server and rollout do not import each other."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

ROLLOUT = "rollout.json"


def read_rollout(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    try:
        return json.loads((Path(run_dir) / ROLLOUT).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def write_rollout(run_dir: str | os.PathLike, **changes) -> dict[str, Any]:
    rd = Path(run_dir)
    st = read_rollout(rd) or {"generation": 0, "history": []}
    event = {k: v for k, v in changes.items() if k != "history"}
    st.update(changes)
    st["generation"] = int(st.get("generation", 0)) + 1
    st["updated_at"] = time.time()
    st.setdefault("history", []).append({"at": st["updated_at"], "generation": st["generation"], **event})
    st["history"] = st["history"][-50:]
    tmp = rd / f".{ROLLOUT}.tmp"
    tmp.write_text(json.dumps(st, indent=2))
    os.replace(tmp, rd / ROLLOUT)
    return st


def init_state(run_dir: str | os.PathLike, model: str, stable: str | None) -> dict[str, Any]:
    (Path(run_dir) / ROLLOUT).unlink(missing_ok=True)  # a fresh server starts a fresh history
    return write_rollout(run_dir, model=model, stable=stable, canary=None, percent=0, mirror=0.0, phase="stable")
