"""The canary router: a small asyncio (aiohttp) reverse proxy in front of TorchServe's inference API.

Why a Python router and not nginx ``split_clients``: it needs nothing outside the venv (aiohttp is already
in the lock), it can measure what the rollout decision needs per version (status classes, latency
percentiles) and mirror a fraction of requests to the other version to measure prediction agreement
(mean IoU of the two label maps), and it reports its in-flight requests per version so promote / rollback
can drain a version before unregistering it. One asyncio loop on loopback adds ~1 ms per request.

Routing: ``POST /predictions/<model>`` for the rolled-out model goes to ``/predictions/<model>/<stable>``
or, with probability ``percent``/100, to ``/<canary>``; any other ``/predictions/...`` path (explicit
version, other model) passes through unchanged. The ``Authorization`` header is forwarded: TorchServe
checks the token. The split comes from ``<run_dir>/rollout.json`` (written atomically by
``faceparse.serve.rollout``), polled every 50 ms; each change bumps ``generation`` and starts fresh stats.

``GET /-/healthz`` (no auth): liveness + applied generation. ``GET /-/stats`` (bearer = TorchServe's
inference or management key): per-version counts, error rates, latency p50/p95/p99, in-flight, agreement.
"""
from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from ..defaults import fill_defaults
from ..schema import Rollout
from .codecs import codec_for
from .imaging import payload_bytes
from .rollout_state import ROLLOUT

# Imports inside functions here: the canary router stays torch-free (tests/code/test_light_imports.py)

ROUTER_PID, ROUTER_LOG = "router.pid", "router.log"
FORWARD_HEADERS = ("authorization", "content-type", "x-resolution", "x-format", "x-detect", "accept")
MAX_BODY = 20 * 1024 * 1024
MAX_LAT = 20000
# A prediction is idempotent: one lost to its worker (TorchServe 507 "worker died", 503 "no worker", or the
# connection dropped: 502) is sent again after a pause that doubles each time (TorchServe queues it for the
# worker it restarts, in ~5 s) until it is answered otherwise or this many seconds have passed
WORKER_LOSS = (502, 503, 507)
RETRY_WAIT_S = 20.0


def percentile(values, q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return float(v[lo] + (v[hi] - v[lo]) * (k - lo))


class Stats:
    def __init__(self):
        self.n = 0
        self.codes: dict[str, int] = {}
        self.errors = 0          # 5xx and upstream failures
        self.client_errors = 0   # 4xx
        self.lat = deque(maxlen=MAX_LAT)

    def add(self, status: int, ms: float) -> None:
        self.n += 1
        self.codes[str(status)] = self.codes.get(str(status), 0) + 1
        if status >= 500:
            self.errors += 1
        elif status >= 400:
            self.client_errors += 1
        if status < 400:
            self.lat.append(ms)

    def summary(self) -> dict[str, Any]:
        lat = list(self.lat)
        return {"n": self.n, "errors": self.errors, "client_errors": self.client_errors,
                "error_rate": self.errors / self.n if self.n else None,
                "client_error_rate": self.client_errors / self.n if self.n else None,
                "codes": dict(self.codes), "p50_ms": percentile(lat, 0.5), "p95_ms": percentile(lat, 0.95),
                "p99_ms": percentile(lat, 0.99)}


class Router:
    def __init__(self, run_dir: Path, upstream: str, key_file: Path, mirror_concurrency: int = 2):
        self.run_dir = run_dir
        self.upstream = upstream.rstrip("/")
        self.key_file = key_file
        self.state: dict[str, Any] = {}
        self.generation = -1
        self._sig = None
        self.stats: dict[str, Stats] = {}
        self.agreement: list[dict[str, Any]] = []
        self.inflight: dict[str, int] = {}
        self.total = 0
        self.mirror_sem = asyncio.Semaphore(mirror_concurrency)
        self.mirror_dropped = 0
        self.retried = 0         # predictions sent again after a worker loss
        self.session = None
        self._keys: tuple[Any, set[str]] = (None, set())
        self.rng = random.Random()   # the split and mirror draws; tests seed it

    # --- state --------------------------------------------------------------------------------------
    def reload(self) -> None:
        p = self.run_dir / ROLLOUT
        try:
            st = p.stat()
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            sig = None
        if sig == self._sig:
            return
        try:
            state = json.loads(p.read_text()) if sig else {}
        except (json.JSONDecodeError, OSError):
            return  # torn read: next poll
        self._sig = sig
        gen = int(state.get("generation", 0))
        if gen != self.generation:
            self.stats, self.agreement, self.mirror_dropped = {}, [], 0
        self.state, self.generation = state, gen

    async def poll(self) -> None:
        while True:
            try:
                self.reload()
            except Exception:  # noqa: BLE001 - keep polling whatever the file holds
                pass
            await asyncio.sleep(0.05)

    def route(self, name: str) -> tuple[str | None, str | None]:
        """(version, arm) for an unversioned request to ``name``."""
        st = self.state
        if name != st.get("model") or not st.get("stable"):
            return None, None
        canary, pct = st.get("canary"), float(st.get("percent") or 0)
        if canary and pct > 0 and self.rng.random() * 100 < pct:
            return str(canary), "canary"
        return str(st["stable"]), "stable"

    # --- auth for the stats endpoint -------------------------------------------------------------------
    def valid_keys(self) -> set[str]:
        try:
            sig = self.key_file.stat().st_mtime_ns
        except FileNotFoundError:
            return set()
        if sig != self._keys[0]:
            try:
                raw = json.loads(self.key_file.read_text())
                keys = {v["key"] for k, v in raw.items() if k.lower() in ("inference", "management")}
                self._keys = (sig, keys)
            except (json.JSONDecodeError, OSError, KeyError, TypeError):
                return self._keys[1]
        return self._keys[1]

    def authorised(self, request) -> bool:
        h = request.headers.get("Authorization", "")
        token = h[7:].strip() if h.lower().startswith("bearer ") else ""
        return bool(token) and any(hmac.compare_digest(token, k) for k in self.valid_keys())

    # --- proxying ------------------------------------------------------------------------------------
    async def forward(self, path: str, headers: dict, body: bytes, version: str | None):
        import aiohttp

        if version:
            self.inflight[version] = self.inflight.get(version, 0) + 1
        try:
            async with self.session.post(f"{self.upstream}{path}", data=body, headers=headers) as r:
                data = await r.read()
                keep = {k: v for k, v in r.headers.items()
                        if k.lower() in ("content-type", "x-model-version", "x-request-id")}
                return r.status, data, keep
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            msg = json.dumps({"code": 502, "type": "BadGateway", "message": f"upstream: {type(e).__name__}"})
            return 502, msg.encode(), {"Content-Type": "application/json"}
        finally:
            if version:
                self.inflight[version] -= 1

    async def predict(self, request):
        from aiohttp import web

        name = request.match_info["name"]
        explicit = request.match_info.get("version")
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARD_HEADERS}
        try:
            body = await upstream_body(request, headers)
        except ValueError as e:
            return web.json_response({"code": 400, "type": "Bad Request", "message": str(e)}, status=400)
        # TorchServe 0.12 drops URL query parameters before the handler: carry them as headers
        for opt in ("resolution", "format", "detect"):
            if opt in request.query and not any(k.lower() == f"x-{opt}" for k in headers):
                headers[f"X-{opt.capitalize()}"] = request.query[opt]
        self.total += 1
        version, arm = (explicit, None) if explicit else self.route(name)
        gen = self.generation
        t0 = time.perf_counter()
        path = f"/predictions/{name}" + (f"/{version}" if version else "")
        status, data, rh = await self.forward(path, headers, body, version)
        if status in WORKER_LOSS:
            status, data, rh = await self.retry(path, headers, body, version, (status, data, rh))
        if status == 404 and arm is not None:
            # the version went away between routing and forwarding (promote / rollback race): re-route once
            v2, arm2 = self.route(name)
            if v2 != version:
                version, arm = v2, arm2
                status, data, rh = await self.forward(f"/predictions/{name}/{v2}", headers, body, v2)
        ms = (time.perf_counter() - t0) * 1000
        if arm is not None and gen == self.generation:
            self.stats.setdefault(version, Stats()).add(status, ms)
        resp = web.Response(status=status, body=data, headers={**rh, **({"X-Canary-Arm": arm} if arm else {})})
        st = self.state
        if (arm is not None and status == 200 and st.get("canary") and gen == self.generation
                and self.rng.random() < float(st.get("mirror") or 0)):
            other = str(st["canary"]) if arm == "stable" else str(st["stable"])
            codec = codec_for(st.get("stage"))
            fmt = next((v for k, v in headers.items() if k.lower() == "x-format"), codec.formats[0])
            live = data if fmt.strip().lower() == codec.mirror_format else None
            asyncio.ensure_future(self.mirror(name, headers, body, version, other, live, gen, codec))
        return resp

    async def retry(self, path: str, headers: dict, body: bytes, version: str | None, lost: tuple):
        """``lost`` (a worker-loss answer) sent again until answered otherwise, within RETRY_WAIT_S."""
        deadline, pause = time.monotonic() + RETRY_WAIT_S, 0.25
        while lost[0] in WORKER_LOSS and time.monotonic() + pause < deadline:
            await asyncio.sleep(pause)
            self.retried += 1
            lost = await self.forward(path, headers, body, version)
            pause *= 2
        return lost

    async def mirror(self, name, headers, body, live, other, live_answer, gen, codec) -> None:
        """Shadow request: the same image to the other version, then the stage codec's agreement of the two
        answers (the codec's measure in [0, 1]: label maps mean IoU, points 1 − NME, images 1 − mean |a − b|)."""
        if self.mirror_sem.locked():
            self.mirror_dropped += 1
            return
        async with self.mirror_sem:
            h = {**{k: v for k, v in headers.items() if k.lower() != "x-format"}, "X-Format": codec.mirror_format}
            s2, other_answer, _ = await self.forward(f"/predictions/{name}/{other}", h, body, other)
            if live_answer is None:
                s1, live_answer, _ = await self.forward(f"/predictions/{name}/{live}", h, body, live)
                if s1 != 200:
                    return
            if s2 != 200 or gen != self.generation:
                if gen == self.generation:
                    self.agreement.append({"live": live, "other": other, "agreement": None, "status": s2})
                return
            loop = asyncio.get_running_loop()
            value = await loop.run_in_executor(None, codec.agreement, live_answer, other_answer)
            if gen == self.generation:
                self.agreement.append({"live": live, "other": other, "agreement": value, "status": 200})
                del self.agreement[:-MAX_LAT]

    async def passthrough_get(self, request):
        from aiohttp import web

        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARD_HEADERS}
        try:
            async with self.session.get(f"{self.upstream}{request.path}", headers=headers) as r:
                return web.Response(status=r.status, body=await r.read(),
                                    headers={"Content-Type": r.headers.get("Content-Type", "application/json")})
        except Exception as e:  # noqa: BLE001
            return web.json_response({"code": 502, "message": f"upstream: {type(e).__name__}"}, status=502)

    async def healthz(self, request):
        from aiohttp import web

        return web.json_response({"ok": True, "generation": self.generation})

    def snapshot(self) -> dict[str, Any]:
        values = [a["agreement"] for a in self.agreement if a["agreement"] is not None]
        return {
            "generation": self.generation, "total_requests": self.total, "retried": self.retried,
            "state": {k: v for k, v in self.state.items() if k != "history"},
            "inflight": {k: v for k, v in self.inflight.items()},
            "versions": {v: s.summary() for v, s in self.stats.items()},
            "agreement": {"n": len(values), "failed": sum(1 for a in self.agreement if a["agreement"] is None),
                          "dropped": self.mirror_dropped,
                          "mean": (sum(values) / len(values)) if values else None,
                          "min": min(values) if values else None},
        }

    async def stats_view(self, request):
        from aiohttp import web

        if not self.authorised(request):
            return web.json_response({"code": 401, "message": "bearer token required (TorchServe inference "
                                      "or management key)"}, status=401)
        return web.json_response(self.snapshot())


async def upstream_body(request, headers: dict) -> bytes:
    """The request body in a form TorchServe takes, whatever Content-Type the client sent.

    TorchServe's frontend decodes ``application/x-www-form-urlencoded`` (curl's default for
    ``--data-binary``) as a form and answers HTTP 500 before the handler runs, so a raw body is forwarded
    as ``application/octet-stream`` unless it is JSON (KServe v1). Multipart forms are unpacked here: the
    image field becomes the raw body and ``resolution`` / ``format`` fields become X- headers; a malformed
    form is the client's mistake (ValueError → 400), never a 5xx from upstream."""
    from aiohttp import web
    from aiohttp.http_exceptions import HttpProcessingError

    for k in [k for k in headers if k.lower() == "content-type"]:
        del headers[k]
    ctype = request.content_type
    headers["Content-Type"] = "application/json" if ctype == "application/json" else "application/octet-stream"
    if ctype != "multipart/form-data":
        try:
            return await request.read()   # over MAX_BODY: aiohttp's own 413 (web.HTTPRequestEntityTooLarge)
        except (web.RequestPayloadError, HttpProcessingError) as e:
            # a body its Content-Encoding does not decode (corrupt gzip / deflate): an HTTP 500 before
            cause = e if isinstance(e, HttpProcessingError) else e.__cause__
            why = cause.message if isinstance(cause, HttpProcessingError) else str(e)
            raise ValueError(f"unreadable request body: {why.strip() or type(e).__name__}") from None
    try:
        form = await request.post()
    except web.HTTPException:
        raise   # aiohttp's own answer: 413 for a form over MAX_BODY (it was "malformed", 400, before)
    except Exception as e:  # noqa: BLE001 - aiohttp raises several types for a broken form
        raise ValueError(f"malformed multipart body: {type(e).__name__}") from None
    for opt in ("resolution", "format"):
        if isinstance(form.get(opt), str) and not any(k.lower() == f"x-{opt}" for k in headers):
            headers[f"X-{opt.capitalize()}"] = form[opt]
    for field in ("data", "body", "file"):
        part = form.get(field)
        if part is not None:
            if hasattr(part, "file"):
                return part.file.read()

            return payload_bytes(str(part))  # a text field holds base64, as the handler reads it
    raise ValueError("multipart body has no image field: send the image in field 'data'")


def _iou(a: bytes, b: bytes) -> float | None:
    """Agreement of two label-map PNGs (the parser's codec)."""
    return codec_for("parser").agreement(a, b)


def make_app(router: Router):
    import aiohttp
    from aiohttp import web

    async def on_start(app):
        router.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=128), timeout=aiohttp.ClientTimeout(total=180),
            auto_decompress=False, trust_env=False)
        router.reload()
        app["poll"] = asyncio.ensure_future(router.poll())

    async def on_stop(app):
        app["poll"].cancel()
        await router.session.close()

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/predictions/{name}", router.predict)
    app.router.add_post("/predictions/{name}/{version}", router.predict)
    app.router.add_get("/ping", router.passthrough_get)
    app.router.add_get("/-/healthz", router.healthz)
    app.router.add_get("/-/stats", router.stats_view)
    app.on_startup.append(on_start)
    app.on_cleanup.append(on_stop)
    return app


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="faceparse canary router")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--key-file", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    a = ap.parse_args(argv)
    if a.host not in ("127.0.0.1", "::1", "localhost"):
        raise SystemExit("the router binds to loopback only")
    from aiohttp import web

    router = Router(Path(a.run_dir), a.upstream, Path(a.key_file))
    web.run_app(make_app(router), host=a.host, port=a.port, access_log=None, print=None,
                handle_signals=True, shutdown_timeout=10)


# --- process management (used by faceparse.serve.server) ------------------------------------------------

def _router_port(params: dict[str, Any]) -> int:
    return int(fill_defaults(Rollout, (params.get("serve") or {}).get("rollout"))["router_port"])


def start_router(params: dict[str, Any], rd: Path, state: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
    import requests

    port = _router_port(params)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    log = open(rd / ROUTER_LOG, "ab")
    proc = subprocess.Popen([sys.executable, "-m", "faceparse.serve.router", "--run-dir", str(rd), "--port", str(port),
                             "--upstream", state["inference_url"], "--key-file", state["key_file"]],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    log.close()
    (rd / ROUTER_PID).write_text(str(proc.pid))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    s = requests.Session()
    s.trust_env = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (rd / ROUTER_LOG).read_text(errors="replace")[-1500:]
            raise RuntimeError(f"the canary router exited (port {port} in use? --set serve.rollout.router_port=...):\n{tail}")
        try:
            if s.get(f"{url}/-/healthz", timeout=2).status_code == 200:
                return {"url": url, "pid": proc.pid, "port": port}
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the canary router did not answer on {url} within {timeout_s:.0f} s")


def stop_router(rd: Path, timeout_s: float = 15.0) -> bool:
    p = rd / ROUTER_PID
    if not p.is_file():
        return False
    try:
        pid = int(p.read_text().strip())
    except ValueError:
        p.unlink(missing_ok=True)
        return False
    try:
        import psutil

        proc = psutil.Process(pid)
        cmd = proc.cmdline()
        if "faceparse.serve.router" not in cmd or str(rd) not in cmd:   # a recycled pid is not ours
            p.unlink(missing_ok=True)
            return False
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    except Exception:  # noqa: BLE001 - already gone
        pass
    p.unlink(missing_ok=True)
    return True


def router_status(rd: Path) -> dict[str, Any] | None:
    import requests

    st = json.loads((rd / "server.json").read_text()) if (rd / "server.json").is_file() else {}
    r = st.get("router")
    if not r:
        return None
    try:
        keys = json.loads(Path(st["key_file"]).read_text())
        key = keys["inference"]["key"]
        s = requests.Session()
        s.trust_env = False
        resp = s.get(f"{r['url']}/-/stats", headers={"Authorization": f"Bearer {key}"}, timeout=5)
        return {**r, "stats": resp.json() if resp.status_code == 200 else None, "up": resp.status_code == 200}
    except Exception as e:  # noqa: BLE001
        return {**r, "up": False, "error": f"{type(e).__name__}: {e}"}


if __name__ == "__main__":
    main()
