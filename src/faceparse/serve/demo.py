"""The tail of ``make run``: serve the champion, query it once with a real photo, save the overlay, stop
(unless ``KEEP_SERVING=1``)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .client import Client
from .server import _log_tail, _pid_alive, read_state, run_dir_of, start, status, stop


def serve_and_query(params: dict[str, Any], model_uri: str, image: str | os.PathLike, out: str | os.PathLike,
                    run_dir: str | os.PathLike | None = None, resolution: int = 512,
                    keep_serving: bool | None = None, detect: bool = True) -> dict[str, Any]:
    """Start TorchServe with ``model_uri`` (restarting a server already running from ``run_dir``), POST
    ``image`` through the router endpoint for the overlay (``out``, PNG) and the class fractions
    (``<out stem>.json``), then stop unless ``keep_serving`` (default: $KEEP_SERVING == "1"). ``detect``
    False: the image is an aligned face crop (``X-Detect: false``; a synthetic face has nothing to detect)."""
    keep = keep_serving if keep_serving is not None else os.environ.get("KEEP_SERVING") == "1"
    st = read_state(run_dir)
    if st and _pid_alive(st.get("pid"), run_dir_of(run_dir)):
        stop(run_dir)
    t0 = time.perf_counter()
    st = start(params, model=model_uri, run_dir=run_dir)
    start_s = time.perf_counter() - t0
    try:
        cl = Client.from_state(st)
        name = st["model_name"]
        data = Path(image).read_bytes()
        opt = {} if detect else {"headers": {"X-Detect": "false"}}

        def ask(fmt: str):
            r = cl.predict(name, data, resolution=resolution, fmt=fmt, base=st["endpoint_url"], **opt)
            if r.status_code != 200:
                raise RuntimeError(f"prediction ({fmt}) failed: {r.status_code} {r.text[:300]}\n"
                                   f"{_failure_logs(run_dir_of(run_dir))}")
            return r

        t1 = time.perf_counter()
        r = ask("overlay")
        latency_ms = (time.perf_counter() - t1) * 1000
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(r.content)
        fractions = ask("json").json()
        out.with_suffix(".json").write_text(json.dumps(fractions, indent=2))
        top = sorted(((v, k) for k, v in fractions["fractions"].items() if k != "background"), reverse=True)[:5]
        result = {
            "model": model_uri, "model_version": r.headers.get("X-Model-Version"), "image": str(image),
            "overlay": str(out), "fractions_file": str(out.with_suffix(".json")), "resolution": resolution,
            "latency_ms": round(latency_ms, 1), "start_s": round(start_s, 1),
            "top_classes": {k: round(v, 4) for v, k in top},
            "endpoint": f"{st['endpoint_url']}/predictions/{name}", "key_file": st["key_file"], "kept": keep,
        }
    except BaseException:
        if not keep:
            stop(run_dir)
        raise
    if not keep:
        result["stopped"] = stop(run_dir)["stopped"]
    else:
        result["status"] = {k: v for k, v in status(run_dir).items() if k in ("inference_url", "endpoint_url", "models")}
    return result


def _failure_logs(rd: Path) -> str:
    """The TorchServe and worker log tails a failed demo query prints: why, where CI keeps only the output."""
    return "\n".join(f"-- {log} (last lines):\n{_log_tail(rd, 15, log)}" for log in ("ts_log.log", "model_log.log"))
