"""One torchrun process of the train step, what faceparse.launch.torchrun's command runs:
``python -m faceparse.launch.process --params P --result R`` runs the contract's step function,
``faceparse.train.train``, under the RANK / WORLD_SIZE / LOCAL_RANK torchrun sets; rank 0 writes the result
JSON. (Its own module so that only these processes import torch and the models, not the launching one.)"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..config import load_params
from ..runtime import own_process
from ..train import train


def train_entry(params_file: str, result_file: str) -> int:
    """The train step on ``params_file``; rank 0 writes its result to ``result_file``."""
    own_process()
    params = load_params(params_file)
    result = train(params, progress=False)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(result_file).parent.mkdir(parents=True, exist_ok=True)
        Path(result_file).write_text(json.dumps(result, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m faceparse.launch.process",
                                 description="one torchrun process of the train step (not a user CLI)")
    ap.add_argument("--params", required=True)
    ap.add_argument("--result", required=True)
    a = ap.parse_args(argv)
    return train_entry(a.params, a.result)


if __name__ == "__main__":
    raise SystemExit(main())
