"""A local TorchServe: start / stop / status, bound to 127.0.0.1, token authorization on.

Everything of one server lives in its run dir (default ``runs/serve/``, git-ignored):
``config.properties``, ``key_file.json`` (TorchServe writes it into its working directory, which is the run
dir), ``logs/``, ``tmp/`` (TorchServe's pid file and the workers' unix sockets: ``TMPDIR`` / ``TEMP`` point
there so several servers on one machine never share ``/tmp/.model_server.pid``), ``server.json`` (what
``status`` and the CLI read) and the canary router's files.

Ports: ``serve.inference_port`` / ``management_port`` / ``metrics_port``; gRPC (which TorchServe always
opens, and faceparse does not use) binds two loopback ports the kernel picks. The model API is enabled (the
canary registers versions) and, like every API, needs the management token.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from .client import KEY_FILE, Client, ServeError, ready_workers
from .package import MODEL_STORE, default_model_name, package, serve_section
from .rollout_state import init_state, read_rollout
from .router import router_status, start_router, stop_router

RUN_DIR = Path("runs") / "serve"
STATE = "server.json"
HOST = "127.0.0.1"
MAX_BODY = 20 * 1024 * 1024


def run_dir_of(run_dir: str | os.PathLike | None) -> Path:
    return Path(run_dir or os.environ.get("FACEPARSE_SERVE_DIR") or RUN_DIR).resolve()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
            return True
        except OSError:
            return False


def _torchserve() -> str:
    exe = Path(sys.executable).parent / "torchserve"
    if exe.is_file():
        return str(exe)

    found = shutil.which("torchserve")
    if not found:
        raise FileNotFoundError("torchserve not found: install torchserve into the venv (and Java 17)")
    return found


def _env(rd: Path) -> dict[str, str]:
    tmp = rd / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TS_")}
    env.update({"TMPDIR": str(tmp), "TEMP": str(tmp), "LOG_LOCATION": str(rd / "logs"),
                "METRICS_LOCATION": str(rd / "logs"), "PYTHONUNBUFFERED": "1"})
    # workers run `python -m ts.model_service_worker` with this interpreter: make faceparse importable
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    return env


def read_state(run_dir: str | os.PathLike | None = None) -> dict[str, Any] | None:
    p = run_dir_of(run_dir) / STATE
    try:
        return json.loads(p.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_state(rd: Path, state: dict[str, Any]) -> None:
    tmp = rd / f".{STATE}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, rd / STATE)


def _pid_alive(pid: int | None, run_dir: str | os.PathLike | None = None) -> bool:
    """The TorchServe Java frontend ``pid`` is running — and, given ``run_dir``, is the one started from it
    (its java.io.tmpdir is ``<run_dir>/tmp``), so a recycled pid is never mistaken for ours."""
    if not pid:
        return False
    try:
        p = psutil.Process(int(pid))
        if not p.is_running() or p.status() == psutil.STATUS_ZOMBIE:
            return False
        if run_dir is not None:
            cmd = p.cmdline()
            return "org.pytorch.serve.ModelServer" in cmd and f"-Djava.io.tmpdir={Path(run_dir) / 'tmp'}" in cmd
        return True
    except Exception:  # noqa: BLE001 - psutil.Error, bad pid
        return False


def ts_config(params: dict[str, Any], rd: Path, model_store: Path, load: dict[str, str]) -> str:
    s = serve_section(params)
    lines = [
        "# written by faceparse serve start: loopback only, token authorization on",
        f"inference_address=http://{HOST}:{int(s['inference_port'])}",
        f"management_address=http://{HOST}:{int(s['management_port'])}",
        f"metrics_address=http://{HOST}:{int(s['metrics_port'])}",
        f"grpc_inference_address={HOST}",
        f"grpc_management_address={HOST}",
        # port 0: the kernel picks a free port as gRPC binds it, so nothing can take it first (a port chosen
        # here stayed unbound for seconds while the JVM started; a clash stopped TorchServe right after start-up)
        "grpc_inference_port=0",
        "grpc_management_port=0",
        "disable_token_authorization=false",
        "enable_model_api=true",
        "enable_envvars_config=false",
        "metrics_mode=prometheus",
        "enable_metrics_api=true",
        "install_py_dep_per_model=false",
        f"default_workers_per_model={int(s['workers'])}",
        f"max_request_size={MAX_BODY}",
        f"max_response_size={MAX_BODY}",
        "job_queue_size=256",
        "number_of_netty_threads=2",
        "netty_client_threads=2",
        "vmargs=-Xmx512m -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -Dlog4j2.formatMsgNoLookups=true",
        f"model_store={model_store}",
        # registration (model API) only from this model store: never a URL from a request
        # (a java.util.Properties file: backslashes doubled)
        "allowed_urls=" + ("file://" + re.escape(str(model_store)) + r"/.*\.mar").replace("\\", "\\\\"),
    ]
    if load:
        lines.append("load_models=" + ",".join(f"{n}={m}" for n, m in load.items()))
    return "\n".join(lines) + "\n"


def start(params: dict[str, Any], model: str | None = None, run_dir: str | os.PathLike | None = None,
          model_store: str | os.PathLike | None = None, version: str | None = None, name: str | None = None,
          mar: str | os.PathLike | None = None, router: bool = True, timeout_s: float = 180.0) -> dict[str, Any]:
    """Package ``model`` (or use ``mar``), start TorchServe with it, wait until its workers are READY, start
    the canary router in pass-through mode; return the status dict."""
    s = serve_section(params)
    rd = run_dir_of(run_dir)
    rd.mkdir(parents=True, exist_ok=True)
    st = read_state(rd)
    if st and _pid_alive(st.get("pid"), rd):
        raise ValueError(f"TorchServe is already running from {rd} (pid {st['pid']}): `faceparse serve stop` first")
    name = name or default_model_name(params)
    store = Path(model_store or MODEL_STORE).resolve()
    store.mkdir(parents=True, exist_ok=True)
    load: dict[str, str] = {}
    if mar is None and model is not None:
        mar = package(model, params, model_store=store, version=version, name=name)
    if mar is not None:
        mar = Path(mar).resolve()
        if mar.parent != store:
            shutil.copy2(mar, store / mar.name)
        load[name] = mar.name
    for key in ("inference_port", "management_port", "metrics_port"):
        if not _port_free(int(s[key])):
            raise ValueError(f"serve.{key}={s[key]} is in use on {HOST}: stop what holds it or --set serve.{key}=...")
    (rd / "logs").mkdir(exist_ok=True)
    (rd / KEY_FILE).unlink(missing_ok=True)
    cfg = rd / "config.properties"
    cfg.write_text(ts_config(params, rd, store, load))
    env = _env(rd)
    pid_file = rd / "tmp" / ".model_server.pid"
    pid_file.unlink(missing_ok=True)
    with open(rd / "torchserve.out", "ab") as out:
        subprocess.run([_torchserve(), "--start", "--ts-config", str(cfg), "--model-store", str(store), "--ncs"],
                       cwd=rd, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=60, check=False,
                       start_new_session=True)
    pid = None
    for _ in range(100):
        if pid_file.is_file() and pid_file.read_text().strip():
            pid = int(pid_file.read_text().strip())
            break
        time.sleep(0.1)
    if pid is None:
        raise RuntimeError(f"TorchServe did not start: see {rd / 'torchserve.out'}")
    state = {
        "pid": pid, "run_dir": str(rd), "model_store": str(store), "model_name": name,
        "inference_url": f"http://{HOST}:{int(s['inference_port'])}",
        "management_url": f"http://{HOST}:{int(s['management_port'])}",
        "metrics_url": f"http://{HOST}:{int(s['metrics_port'])}",
        "key_file": str(rd / KEY_FILE), "config": str(cfg), "logs": str(rd / "logs"),
        "started_at": time.time(), "router": None, "endpoint_url": f"http://{HOST}:{int(s['inference_port'])}",
    }
    _write_state(rd, state)
    try:
        _wait_ready(state, [name] if load else [], timeout_s)
        if router:
            state["router"] = start_router(params, rd, state)
            state["endpoint_url"] = state["router"]["url"]
            _write_state(rd, state)
        if load:
            init_state(rd, name, Client.from_state(state).default_version(name))
    except BaseException:
        stop(rd)
        raise
    return status(rd)


def _log_tail(rd: Path, n: int = 25, log: str = "ts_log.log") -> str:
    p = rd / "logs" / log
    try:
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return f"(no {log})"


def _wait_ready(state: dict[str, Any], names: list[str], timeout_s: float) -> None:
    rd = Path(state["run_dir"])
    cl = Client.from_state(state, timeout=10)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _pid_alive(state["pid"], rd):
            raise RuntimeError(f"TorchServe exited during start-up; last log lines:\n{_log_tail(rd)}")
        if Path(state["key_file"]).is_file() and cl.ping():
            try:
                if all(any(ready_workers(d) > 0 for d in cl.versions(n)) for n in names):
                    return
            except (ServeError, OSError, ValueError):
                pass
        time.sleep(0.5)
    raise RuntimeError(f"TorchServe not ready within {timeout_s:.0f} s; last log lines:\n{_log_tail(rd)}")


def stop(run_dir: str | os.PathLike | None = None, timeout_s: float = 60.0) -> dict[str, Any]:
    """Stop the router, then TorchServe (``torchserve --stop``), and make sure the Java process and its
    Python workers are gone (SIGTERM, then SIGKILL after ``timeout_s``). Idempotent."""
    rd = run_dir_of(run_dir)
    st = read_state(rd) or {}

    stop_router(rd)
    pid = st.get("pid")
    procs = []
    if _pid_alive(pid, rd):
        try:
            java = psutil.Process(int(pid))
            procs = [java] + java.children(recursive=True)
        except psutil.Error:
            procs = []
    if rd.is_dir():
        subprocess.run([_torchserve(), "--stop"], cwd=rd, env=_env(rd), capture_output=True, timeout=60, check=False)
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(alive, timeout=10)
    (rd / KEY_FILE).unlink(missing_ok=True)
    if st:
        st.update({"stopped_at": time.time(), "pid": None})
        _write_state(rd, st)
    return {"stopped": bool(procs), "pid": pid, "killed": len(alive), "left": len(still), "run_dir": str(rd)}


def status(run_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """What is running: urls, key file, models (name → versions, default), the router and the rollout."""
    rd = run_dir_of(run_dir)
    st = read_state(rd)
    if not st:
        return {"running": False, "run_dir": str(rd)}
    running = _pid_alive(st.get("pid"), rd)
    out = {k: st.get(k) for k in ("inference_url", "management_url", "metrics_url", "endpoint_url", "key_file",
                                  "pid", "run_dir", "model_store", "model_name", "logs")}
    out["running"] = running
    out["models"] = {}
    if running:
        cl = Client.from_state(st, timeout=10)
        try:
            for n in cl.models():
                vers = cl.versions(n)
                out["models"][n] = {"versions": sorted(str(v["modelVersion"]) for v in vers),
                                    "default": cl.default_version(n),
                                    "ready_workers": {str(v["modelVersion"]): ready_workers(v) for v in vers}}
        except (ServeError, OSError) as e:
            out["error"] = str(e)

    out["router"] = router_status(rd) if running else None
    out["rollout"] = read_rollout(rd)
    return out


def token(run_dir: str | os.PathLike | None = None, kind: str = "inference") -> str | None:
    """The running server's bearer token (``inference`` or ``management`` key); None when not running."""
    st = read_state(run_dir)
    if not st or not _pid_alive(st.get("pid"), run_dir_of(run_dir)):
        return None
    try:
        return str(json.loads(Path(st["key_file"]).read_text())[kind]["key"])
    except (OSError, KeyError, TypeError, json.JSONDecodeError):
        return None


def kill_worker(run_dir: str | os.PathLike | None = None, sig: int = signal.SIGKILL) -> list[int]:
    """Chaos helper: kill the Python worker processes of the running TorchServe (TorchServe restarts them)."""
    rd = run_dir_of(run_dir)
    st = read_state(rd) or {}
    if not _pid_alive(st.get("pid"), rd):
        return []
    killed = []
    for c in psutil.Process(int(st["pid"])).children(recursive=True):
        try:
            if "model_service_worker" in " ".join(c.cmdline()):
                os.kill(c.pid, sig)
                killed.append(c.pid)
        except (psutil.Error, ProcessLookupError):
            pass
    return killed
