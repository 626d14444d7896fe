"""Where the page's answers come from: the models in this process, or a running endpoint.

Both backends answer the same JSON, one entry per model stage, each with a ``status``:

* ``ok`` — the stage's output plus ``source`` (which model answered: its reference, its version and, through
  an endpoint, the canary arm from the router's ``X-Canary-Arm`` header) and ``model_ms`` (time spent on it);
* ``unavailable`` — the stage has no model here (not loaded, not served by the endpoint, or not built yet) and
  ``message`` says why: nothing is made up in its place;
* ``error`` — the stage failed on this photo; ``message`` says how.

Label maps travel as base64 of the raw ``uint8`` class ids, row-major (``labels``, ``resolution``²), so the
page colours and toggles classes itself; points as (x, y) pixels of the photo.
"""
from __future__ import annotations

import asyncio
import base64
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..labels import get_table
from ..stages import bundle_stage

STAGES = ("parser", "landmarks", "completion")
NOT_YET = {
    "deocclusion": "not on this page yet: `faceparse deocclude PHOTOS --out DIR` or the faceparse-fisn endpoint "
                   "removes the occluder",
    "reconstruction": "not on this page yet: `faceparse reconstruct PHOTOS --out DIR` or the faceparse-recon3d "
                      "endpoint gives the 3D face (mesh, coefficients, render)",
}
FACE_DETECTION = ("Each stage here finds the faces in a photo (MTCNN), reads each one aligned and lays its answer back "
                  "on the photo (boxes drawn in-process); a photo without a face is answered as such.")
COMPLETION_RESOLUTION = 256
MESSAGE_CHARS = 400


class EndpointDown(RuntimeError):
    """The endpoint did not answer at all (refused / reset connection)."""


class StageError(RuntimeError):
    """One stage failed on one photo; the message is for the page."""


def _short(e: BaseException | str) -> str:
    s = str(e).strip() or type(e).__name__
    return s if len(s) <= MESSAGE_CHARS else s[:MESSAGE_CHARS - 1] + "…"


def labels_b64(labels: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(labels, dtype=np.uint8).tobytes()).decode()


def ok(payload: dict[str, Any], source: dict[str, Any], ms: float) -> dict[str, Any]:
    return {"status": "ok", **payload, "source": source, "model_ms": round(ms, 1)}


def unavailable(message: str) -> dict[str, Any]:
    return {"status": "unavailable", "message": _short(message)}


def failed(message: str) -> dict[str, Any]:
    return {"status": "error", "message": _short(message)}


def parser_payload(labels: np.ndarray, faces: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``faces``: the detected faces (photo pixels), None when the answer does not say (the endpoint's PNG)."""
    h, w = labels.shape
    return {"resolution": int(max(h, w)), "width": int(w), "height": int(h), "labels": labels_b64(labels),
            "faces": faces}


def no_face(message: str) -> dict[str, Any]:
    return {"status": "no_face", "message": _short(message)}


def points_payload(points: list[np.ndarray], size: tuple[int, int]) -> dict[str, Any]:
    """The most confident face's points (``points``) and every face's (``faces``), the photo's pixels."""
    faces = [np.round(np.asarray(p, dtype=np.float64), 2).tolist() for p in points]
    return {"points": faces[0], "faces": faces, "image_size": list(size)}


def completion_payload(maps: dict[str, np.ndarray | None], missing: dict[str, str]) -> dict[str, Any]:
    shape = next(m.shape for m in maps.values() if m is not None)
    occ = maps.get("occlusion")
    return {"resolution": int(max(shape)), "size": [int(shape[1]), int(shape[0])],
            "maps": {k: (labels_b64(v) if v is not None else None) for k, v in maps.items()},
            "missing": missing,
            "occluded_fraction": None if occ is None else round(float((occ > 0).mean()), 4)}


def table_info(name: str) -> dict[str, Any]:
    t = get_table(name)
    return {"label_table": t.name, "classes": list(t.classes), "palette": t.palette().astype(int).tolist()}


def _not_yet() -> dict[str, dict[str, Any]]:
    return {k: unavailable(v) for k, v in NOT_YET.items()}


# --- the models in this process ------------------------------------------------------------------------

class InProcess:
    """Each stage's model loaded here: ``refs`` {stage: bundle dir | models:/ URI | None}; None = the stage's
    registry champion (``models:/<registry.model_name>@champion`` of its params section). The completion
    stage, unless given a bundle of its own, is composed from the parser and landmark references. A model that
    cannot be loaded leaves its stage ``unavailable`` with the reason; the others still answer. Inference runs
    on one worker thread, one request at a time."""

    mode = "in-process"

    def __init__(self, raw_params: dict[str, Any], refs: dict[str, str | None] | None = None,
                 completion_resolution: int = COMPLETION_RESOLUTION):
        self.raw = raw_params or {}
        self.completion_resolution = int(completion_resolution)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="faceparse-ui")
        self.nets: dict[str, tuple[Any, dict[str, Any]]] = {}
        self.stage_info: dict[str, dict[str, Any]] = {}
        refs = dict(refs or {})
        for stage in ("parser", "landmarks"):
            ref = refs.get(stage) or self.default_ref(stage)
            refs[stage] = ref
            self._load(stage, ref, lambda r=ref, s=stage: self._load_single(s, r))
        comp = refs.get("completion")
        if comp:
            self._load("completion", comp, lambda: self._load_completion(model=comp))
        elif refs["parser"] and refs["landmarks"]:
            self._load("completion", "composed from the parser and landmark models above",
                       lambda: self._load_completion(parser=refs["parser"], landmarks=refs["landmarks"]),
                       failure="cannot compose the parser and landmark models")
        else:
            self.stage_info["completion"] = {"available": False, "model": None, "version": None,
                                             "message": "needs a parser and a landmark model (or --completion)"}
        parser_meta = self.nets.get("parser", (None, {}))[1]
        self.table = table_info(str(parser_meta.get("label_table") or "celebamask-hq"))

    def default_ref(self, stage: str) -> str | None:
        from ..stages import for_stage

        try:
            return f"models:/{for_stage(self.raw, stage)['registry']['model_name']}@champion"
        except (KeyError, TypeError, ValueError):
            return None

    def _load(self, stage: str, ref: str | None, fn: Callable[[], tuple[Any, dict[str, Any], str | None]],
              failure: str | None = None) -> None:
        if not ref:
            self.stage_info[stage] = {"available": False, "model": None, "version": None,
                                      "message": f"no {stage} model: give --{stage} (a bundle dir or models:/ URI)"}
            return
        try:
            net, meta, version = fn()
        except Exception as e:  # noqa: BLE001 - any load failure leaves this stage unavailable, with its reason
            self.stage_info[stage] = {"available": False, "model": ref, "version": None,
                                      "message": f"{failure or f'cannot load {ref}'}: {_short(e)}"}
            return
        self.nets[stage] = (net, meta)
        self.stage_info[stage] = {"available": True, "model": ref, "version": version, "message": None,
                                  "input_size": int(meta.get("input_size", 256))}

    def _load_single(self, stage: str, ref: str):
        from ..bundle import load_bundle
        from ..registry import resolve_bundle
        from ..stages import for_stage
        from ..tracking import tracking_uri

        uri = tracking_uri(for_stage(self.raw, stage)) if str(ref).startswith(("models:/", "runs:/")) else None
        bdir, info = resolve_bundle(ref, tracking_uri=uri)
        net, meta = load_bundle(bdir)
        if bundle_stage(meta) != stage:
            raise ValueError(f"it is a {meta.get('stage', 'parser')!r} model, not a {stage!r} one")
        version = info.get("uri") if info.get("version") else self._local_version(stage, Path(bdir))
        return net.eval(), meta, version

    def _local_version(self, stage: str, bdir: Path) -> str:
        """A local bundle's registry version when `register` recorded the same weights (the stage's
        ``registry.registered_file``), else its weights' hash: never a version it does not have."""
        from ..bundle import WEIGHTS
        from ..hashing import sha256_file
        from ..stages import for_stage

        sha = sha256_file(bdir / WEIGHTS)
        try:
            reg = Path(str(for_stage(self.raw, stage)["registry"]["registered_file"]))
            rec = json.loads(reg.read_text()) if reg.is_file() else {}
        except (KeyError, TypeError, ValueError, OSError):
            rec = {}
        if rec.get("bundle_sha256") == sha and rec.get("uri"):
            return f"{rec['uri']} (same weights)"
        return f"unregistered (weights sha256 {sha[:12]})"

    def _load_completion(self, **refs):
        from ..stages.completion.photo import load_completion

        net, meta = load_completion(self.raw, **refs)
        parts = meta.get("composes") or {}
        version = ", ".join(f"{k}: {v.get('model_uri') or v.get('ref')}" for k, v in parts.items()) or None
        return net.eval(), meta, version

    def info(self) -> dict[str, Any]:
        return {"mode": self.mode, "endpoint": None, "endpoint_ok": None, "endpoint_message": None,
                "stages": self.stage_info, **self.table}

    def _source(self, stage: str) -> dict[str, Any]:
        i = self.stage_info[stage]
        return {"model": i["model"], "version": i["version"], "arm": None, "via": "in-process (no canary)"}

    # --- stages (on the worker thread) ------------------------------------------------------------------
    def _parser(self, image, resolution: int, detect: bool = True) -> dict[str, Any]:
        """The photo's faces found, aligned and parsed in place (faceparse.photos), as predict and the API do;
        ``detect`` False: the photo is an aligned face crop, parsed whole."""
        import torch

        from ..photos import NoFaceError, faces_json, parse_planned, parse_whole, plan_photo

        net, meta = self.nets["parser"]
        size = int(meta.get("input_size", 256))
        t0 = time.perf_counter()
        try:
            plan = plan_photo(image, size, int(resolution), detect=detect, what="this photo")
        except NoFaceError as e:
            return no_face(str(e))
        with torch.inference_mode():
            labels = (parse_whole(net, [image], size, plan.size[0])[0] if plan.whole
                      else parse_planned(net, image, plan, size))
        return ok(parser_payload(labels, faces_json(plan) if detect else None), self._source("parser"),
                  (time.perf_counter() - t0) * 1000)

    def _landmarks(self, image, detect: bool = True) -> dict[str, Any]:
        """68 points per face found in the photo (framed as the parser's), in its pixels."""
        from ..photos import NoFaceError
        from ..stages import get_stage

        net, meta = self.nets["landmarks"]
        t0 = time.perf_counter()
        try:
            pts, _ = get_stage("landmarks").predict_photo(net, meta, image, detect=detect, what="this photo")
        except NoFaceError as e:
            return no_face(str(e))
        return ok(points_payload(pts, image.size), self._source("landmarks"), (time.perf_counter() - t0) * 1000)

    def _completion(self, image, detect: bool = True) -> dict[str, Any]:
        """Each face completed in place: maps of the photo's shape, long side ``completion_resolution``."""
        from ..stages.completion.photo import complete_photo
        from ..photos import NoFaceError

        net, meta = self.nets["completion"]
        t0 = time.perf_counter()
        try:
            m, _ = complete_photo(net, meta, image, self.completion_resolution, detect, what="this photo")
        except NoFaceError as e:
            return no_face(str(e))
        maps = {"alpha": m.alpha, "beta": m.beta, "gamma": m.gamma, "occlusion": m.occlusion.astype(np.uint8)}
        return ok(completion_payload(maps, {}), self._source("completion"), (time.perf_counter() - t0) * 1000)

    def _run(self, stage: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        from ..runtime import tick

        if stage not in self.nets:
            return unavailable(self.stage_info[stage]["message"])
        tick()   # the intra-op pool sized to the cores other processes leave free (faceparse.runtime)
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - one stage's failure is shown on the page, the others still answer
            return failed(f"{stage} failed on this photo: {type(e).__name__}: {_short(e)}")

    def _analyze(self, image, resolution: int, detect: bool) -> dict[str, Any]:
        return {"parser": self._run("parser", lambda: self._parser(image, resolution, detect)),
                "landmarks": self._run("landmarks", lambda: self._landmarks(image, detect)),
                "completion": self._run("completion", lambda: self._completion(image, detect)), **_not_yet()}

    async def analyze(self, image, data: bytes, resolution: int, detect: bool = True) -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._analyze, image, resolution, detect)

    async def parse(self, image, data: bytes, resolution: int, detect: bool = True) -> dict[str, Any]:
        return {"parser": await asyncio.get_running_loop().run_in_executor(
            self.pool, self._run, "parser", lambda: self._parser(image, resolution, detect))}

    async def health(self) -> tuple[bool | None, str | None]:
        return None, None

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


# --- a running endpoint --------------------------------------------------------------------------------

class Endpoint:
    """A running endpoint (``faceparse serve start``'s router, or TorchServe itself): each stage is asked at
    ``POST <url>/predictions/<model name>`` with the bearer ``token`` (or, given ``serve_dir``, the server's
    own key file, renewed when TorchServe refuses an expired key). The answer's ``X-Model-Version`` and
    ``X-Canary-Arm`` headers are shown as the page's "which version / which arm answered"."""

    mode = "endpoint"

    def __init__(self, url: str, names: dict[str, str], token: str | None = None, serve_dir: str | None = None,
                 label_table: str = "celebamask-hq", timeout: float = 120.0,
                 completion_resolution: int = COMPLETION_RESOLUTION):
        import requests

        self.client = None
        if serve_dir:
            from ..serve import server
            from ..serve.client import Client

            st = server.read_state(serve_dir)
            if not st:
                raise ValueError(f"no server state in {serve_dir} (start one with `faceparse serve start`)")
            url = url or st["endpoint_url"]
            self.client = Client.from_state(st)
        if not url:
            raise ValueError("an endpoint URL is needed (--endpoint URL, or --serve-dir DIR of a running server)")
        self.url = url.rstrip("/")
        self.names = dict(names)
        self.token = token
        self.timeout = float(timeout)
        self.completion_resolution = int(completion_resolution)
        self.session = requests.Session()
        self.session.trust_env = False
        self.pool = ThreadPoolExecutor(4, thread_name_prefix="faceparse-ui")
        self.table = table_info(label_table)

    def _auth(self) -> dict[str, str]:
        tok = self.token
        if tok is None and self.client is not None:
            try:
                tok = self.client.keys().get("inference")
            except Exception:  # noqa: BLE001 - no readable key file: ask without a token, the answer says why
                tok = None
        return {"Authorization": f"Bearer {tok}"} if tok else {}

    def _post(self, stage: str, data: bytes, fmt: str, resolution: int | None, detect: bool = True):
        """(response, ms); EndpointDown when nothing answers; StageError on a timeout."""
        import requests

        from ..serve.client import token_refused

        name = self.names[stage]
        # the parser's face detection (the endpoint's default): a photo's own shape back, 422 without a face
        headers = {"Content-Type": "application/octet-stream", "X-Format": fmt, "X-Detect": str(bool(detect)).lower()}
        if resolution:
            headers["X-Resolution"] = str(int(resolution))
        for attempt in (0, 1):
            t0 = time.perf_counter()
            try:
                r = self.session.post(f"{self.url}/predictions/{name}", data=data,
                                      headers={**headers, **self._auth()}, timeout=self.timeout)
            except requests.ConnectionError as e:
                raise EndpointDown(f"{self.url} is not answering ({_reason(e)})") from None
            except requests.Timeout:
                raise StageError(f"{self.url} gave no answer within {self.timeout:.0f} s") from None
            ms = (time.perf_counter() - t0) * 1000
            if attempt == 0 and self.client is not None and self.token is None and token_refused(r):
                try:
                    self.client.renew("inference")   # an expired key: TorchServe writes a fresh one
                    continue
                except Exception:  # noqa: BLE001 - renewal failed: report the refusal below
                    pass
            return r, ms
        return r, ms

    def _call(self, stage: str, data: bytes, fmt: str, resolution: int | None, decode,
              detect: bool = True) -> dict[str, Any]:
        from ..serve.client import token_refused

        name = self.names.get(stage)
        if not name:
            return unavailable(f"no model name for the {stage} stage (--{stage}-model)")
        try:
            r, ms = self._post(stage, data, fmt, resolution, detect)
        except StageError as e:
            return failed(str(e))
        if r.status_code == 200:
            source = {"model": name, "version": r.headers.get("X-Model-Version"),
                      "arm": r.headers.get("X-Canary-Arm"), "via": self.url}
            try:
                return ok(decode(r.content), source, ms)
            except Exception as e:  # noqa: BLE001 - an answer we cannot read is the endpoint's fault
                return failed(f"the endpoint's answer for {name} could not be read: {_short(e)}")
        msg = _message(r)
        if token_refused(r):
            return failed(f"the endpoint refused the token (HTTP {r.status_code}): {msg} — give --token, or "
                          "--serve-dir to use the server's own key file")
        if r.status_code == 404:
            return unavailable(f"this endpoint serves no model named {name!r} ({msg}); --{stage}-model names it")
        if r.status_code == 422 and "no face" in msg:
            return no_face(msg)
        if r.status_code < 500:
            return failed(f"the endpoint refused the photo (HTTP {r.status_code}): {msg}")
        return failed(f"the endpoint failed (HTTP {r.status_code}): {msg}")

    # --- stages -------------------------------------------------------------------------------------------
    def _parser(self, data: bytes, resolution: int, detect: bool = True) -> dict[str, Any]:
        from ..serve.imaging import read_label_png

        return self._call("parser", data, "png", resolution, lambda b: parser_payload(read_label_png(b)), detect)

    def _landmarks(self, data: bytes, size: tuple[int, int], detect: bool = True) -> dict[str, Any]:
        def decode(b: bytes) -> dict[str, Any]:
            body = json.loads(b)
            faces = [f["points68"] for f in body.get("faces") or []] or [body["points"]]
            return points_payload([np.asarray(f, dtype=np.float64) for f in faces], tuple(body.get("image_size") or size))

        return self._call("landmarks", data, "json", None, decode, detect)

    def _completion(self, data: bytes, detect: bool = True) -> dict[str, Any]:
        from ..serve.imaging import read_label_png

        def decode(b: bytes) -> dict[str, Any]:
            body = json.loads(b)
            gamma = read_label_png(base64.b64decode(body["completed_png"]))
            occ = (read_label_png(base64.b64decode(body["occlusion_png"])) > 0).astype(np.uint8)
            why = "not in the endpoint's answer (it serves M_γ and the occlusion mask)"
            return completion_payload({"alpha": None, "beta": None, "gamma": gamma, "occlusion": occ},
                                      {"alpha": why, "beta": why})

        return self._call("completion", data, "json", self.completion_resolution, decode, detect)

    async def _in_pool(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def _gather(self, calls: dict[str, Any]) -> dict[str, Any]:
        keys = list(calls)
        results = await asyncio.gather(*calls.values(), return_exceptions=True)
        out, down = {}, []
        for k, res in zip(keys, results):
            if isinstance(res, EndpointDown):
                down.append(str(res))
                out[k] = failed(str(res))
            elif isinstance(res, BaseException):
                out[k] = failed(f"{type(res).__name__}: {_short(res)}")
            else:
                out[k] = res
        if down and len(down) == len(keys):
            raise EndpointDown(down[0])
        return out

    async def analyze(self, image, data: bytes, resolution: int, detect: bool = True) -> dict[str, Any]:
        out = await self._gather({"parser": self._in_pool(self._parser, data, resolution, detect),
                                  "landmarks": self._in_pool(self._landmarks, data, image.size, detect),
                                  "completion": self._in_pool(self._completion, data, detect)})
        return {**out, **_not_yet()}

    async def parse(self, image, data: bytes, resolution: int, detect: bool = True) -> dict[str, Any]:
        return await self._gather({"parser": self._in_pool(self._parser, data, resolution, detect)})

    def _ping(self) -> tuple[bool, str | None]:
        import requests

        try:
            r = self.session.get(f"{self.url}/ping", headers=self._auth(), timeout=5)
        except requests.RequestException as e:
            return False, f"{self.url} is not answering ({_reason(e)})"
        if r.status_code == 200:
            return True, None
        return False, f"{self.url}/ping answered HTTP {r.status_code}: {_message(r)}"

    async def health(self) -> tuple[bool | None, str | None]:
        return await self._in_pool(self._ping)

    def info(self) -> dict[str, Any]:
        stages = {s: {"available": None, "model": self.names.get(s), "version": None,
                      "message": "asked of the endpoint with each photo"} for s in STAGES}
        return {"mode": self.mode, "endpoint": self.url, "stages": stages, **self.table}

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.session.close()


def _reason(e: BaseException) -> str:
    s = str(e)
    for key in ("Connection refused", "Connection reset", "Name or service not known", "timed out"):
        if key.lower() in s.lower():
            return key.lower()
    return type(e).__name__


def _message(r) -> str:
    try:
        body = r.json()
        if isinstance(body, dict) and body.get("message"):
            return _short(str(body["message"]))
    except ValueError:
        pass
    return _short(r.text.strip() or r.reason or "")
