"""The page's HTTP server (aiohttp, already the canary router's library): static files and a small JSON API.

``GET /``, ``GET /static/<file>``: the page (HTML, CSS, JS from ``faceparse/ui/static``; nothing from
elsewhere — the Content-Security-Policy says so to the browser).
``GET /api/info``: the mode (in-process / endpoint and whether it answers), the cards (one per registered
stage, in registration order: faceparse.ui.cards) and each stage's model, the label table (classes, colours),
the resolution range and the upload limit.
``GET /api/samples``, ``GET /api/samples/<name>``: the bundled sample photos (the project's own synthetic
faces, plus ``--samples DIR``).
``POST /api/analyze`` (multipart: ``image``, ``resolution``, ``detect``): every stage on one photo; ``detect``
false: the photo is an aligned face crop (the parser's face detection off; the synthetic samples are such).
``POST /api/parse`` (same form): the cards that answer at the output resolution (the parser's) alone, at
another output resolution (the slider).
``POST /api/stages/<name>`` (same form): one stage's card: 200 with its answer; 404 for no such stage or a
stage without a card; 409 when the stage has no model here (the message says what to run); 422 when it finds
no face; 500 when it failed on the photo.
``POST /api/chain`` (same form): the whole chain on the photo in this process, every output in one answer
(faceparse.ui.chain_api); 409 when its models cannot be loaded, 422 when it finds no face.
``GET /-/healthz``: liveness.

A photo the page cannot use is answered 400 / 413 / 415 with ``{"error": {"status", "title", "message"}}``;
an endpoint that does not answer, 502 with the same shape. No traceback reaches the page; a stage without a
model is an ``unavailable`` answer (``/api/analyze``) or a 409 (``/api/stages/<name>``), never a 5xx.
"""
from __future__ import annotations

import io
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ..photos import NoFaceError
from ..serve import imaging
from ..stages import describe
from .backends import FACE_DETECTION, EndpointDown
from .chain_api import ChainRoute, ChainUnavailable

# Imports inside functions here: the page in endpoint mode never loads torch (tests/code/test_light_imports.py)

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
SAMPLE_EXTS = (".jpg", ".jpeg", ".png")
CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
TITLES = {400: "This file is not a photo the page can read", 413: "The file is too large",
          415: "This image format is not accepted", 502: "The model server is not answering",
          404: "No such card", 409: "This stage has no model here", 422: "No face found",
          500: "The stage failed on this photo"}
# a single card's answer (POST /api/stages/<name>) → its HTTP status
CARD_STATUS = {"ok": 200, "unavailable": 409, "no_face": 422, "no_card": 404, "error": 500}
# the synthetic faces offered as samples: (seed, index, occluder kind, title)
SYNTH_SAMPLES = ((11, 2, None, "synthetic face"), (11, 5, "sunglasses", "synthetic face, sunglasses"),
                 (11, 7, "mask", "synthetic face, face mask"), (11, 9, "hand", "synthetic face, a hand"))


@dataclass(frozen=True)
class Sample:
    name: str
    title: str
    data: bytes
    content_type: str
    aligned: bool = False     # an aligned face crop (the synthetic faces): the page turns detection off for it


def synthetic_samples(size: int = 384) -> list[Sample]:
    """The project's own synthetic faces (``faceparse.data.synth``; no licence strings attached)."""
    from ..data.synth import generate_sample

    out = []
    for seed, index, kind, title in SYNTH_SAMPLES:
        s = generate_sample(seed, index, size=size, occlusion_prob=0.0, kind=kind)
        buf = io.BytesIO()
        Image.fromarray(s.image).save(buf, "JPEG", quality=92)
        out.append(Sample(f"synth-{seed}-{index}{'-' + kind if kind else ''}.jpg", title, buf.getvalue(), "image/jpeg",
                          aligned=True))
    return out


def folder_samples(folder: str | Path, limit: int = 12) -> list[Sample]:
    d = Path(folder)
    if not d.is_dir():
        raise FileNotFoundError(f"--samples: not a folder: {d}")
    files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in SAMPLE_EXTS)[:limit]
    return [Sample(re.sub(r"[^A-Za-z0-9._-]", "_", f.name), f"{d.name}/{f.name}", f.read_bytes(),
                   "image/png" if f.suffix.lower() == ".png" else "image/jpeg") for f in files]


def error_response(status: int, message: str, title: str | None = None):
    from aiohttp import web

    return web.json_response({"error": {"status": status, "title": title or TITLES.get(status, "Request refused"),
                                        "message": message}}, status=status)


class PageServer:
    """The handlers around one backend (``faceparse.ui.backends``)."""

    def __init__(self, backend, samples: list[Sample], max_upload: int = DEFAULT_MAX_UPLOAD,
                 max_pixels: int = imaging.DEFAULT_MAX_PIXELS, default_resolution: int = 256,
                 chain: ChainRoute | None = None):
        self.backend = backend
        self.chain_route = chain or ChainRoute()
        self.samples = {s.name: s for s in samples}
        self.order = [s.name for s in samples]
        self.max_upload = int(max_upload)
        self.max_pixels = int(max_pixels)
        self.default_resolution = int(default_resolution)

    # --- static ---------------------------------------------------------------------------------------
    async def index(self, request):
        return self._static("index.html")

    async def static(self, request):
        return self._static(request.match_info["name"])

    def _static(self, name: str):
        from aiohttp import web

        types = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
        path = (STATIC / name).resolve()
        if path.parent != STATIC.resolve() or not path.is_file() or path.suffix not in types:
            raise web.HTTPNotFound()
        return web.Response(body=path.read_bytes(), content_type=types[path.suffix], charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    # --- API ------------------------------------------------------------------------------------------
    async def info(self, request):
        from aiohttp import web

        ok, message = await self.backend.health()
        return web.json_response({
            **self.backend.info(), "endpoint_ok": ok, "endpoint_message": message,
            "resolution": {"min": imaging.MIN_RESOLUTION, "max": imaging.MAX_RESOLUTION,
                           "default": self.default_resolution, "step": 32},
            "max_upload_bytes": self.max_upload, "max_pixels": self.max_pixels,
            "face_detection": {"available": True, "message": FACE_DETECTION},
            "registered": describe()})     # every stage on the one path, this page's cards or not

    async def sample_list(self, request):
        from aiohttp import web

        return web.json_response([{"name": n, "title": self.samples[n].title, "url": f"/api/samples/{n}",
                                   "aligned": self.samples[n].aligned}
                                  for n in self.order])

    async def sample(self, request):
        from aiohttp import web

        s = self.samples.get(request.match_info["name"])
        if s is None:
            raise web.HTTPNotFound()
        return web.Response(body=s.data, content_type=s.content_type)

    async def _photo(self, request) -> tuple[Any, bytes, str, imaging.Options]:
        """(RGB image, its bytes, its file name, the asked resolution / detection) from the form; RequestError
        otherwise."""
        from aiohttp import web

        RequestError = imaging.RequestError
        if request.content_length is not None and request.content_length > self.max_upload + 65536:
            raise RequestError(413, _too_large(request.content_length, self.max_upload))
        if request.content_type != "multipart/form-data":
            raise RequestError(400, "send the photo as multipart/form-data, field 'image'")
        try:
            form = await request.post()
        except web.HTTPRequestEntityTooLarge:
            raise RequestError(413, _too_large(None, self.max_upload)) from None
        except Exception as e:  # noqa: BLE001 - aiohttp raises several types for a broken form
            raise RequestError(400, f"malformed form ({type(e).__name__})") from None
        part = form.get("image")
        if part is None or not hasattr(part, "file"):
            raise RequestError(400, "no photo in the form: field 'image' holds the file")
        data = part.file.read()
        name = str(part.filename or "photo")
        if len(data) > self.max_upload:
            raise RequestError(413, _too_large(len(data), self.max_upload))
        if not data:
            raise RequestError(400, f"{name} is empty")
        opts = imaging.parse_options({"resolution": form.get("resolution"), "detect": form.get("detect")},
                                     default_resolution=self.default_resolution, formats=("png",))
        try:
            image = imaging.decode_image(data, self.max_pixels)
        except RequestError as e:
            raise RequestError(e.status, f"{name}: {e.message}") from None
        return image, data, name, opts

    async def _ask(self, request, what: str, *args):
        """(the answer's JSON, None), or (None, an error response) for a photo the page cannot use or an
        endpoint that does not answer."""
        t0 = time.perf_counter()
        try:
            image, data, name, opts = await self._photo(request)
        except imaging.RequestError as e:
            return None, error_response(e.status, e.message)
        try:
            stages = await getattr(self.backend, what)(*args, image, data, opts.resolution, opts.detect)
        except EndpointDown as e:
            return None, error_response(502, f"{e}. Start it (`faceparse serve start`) or point --endpoint at a "
                                             "running one; the page itself is fine.")
        w, h = image.size
        return {"image": {"name": name, "width": w, "height": h}, "mode": self.backend.mode,
                "resolution": opts.resolution, "detect": opts.detect, "stages": stages,
                "server_ms": round((time.perf_counter() - t0) * 1000, 1)}, None

    async def _answer(self, request, what: str):
        from aiohttp import web

        body, refused = await self._ask(request, what)
        return refused or web.json_response(body)

    async def analyze(self, request):
        return await self._answer(request, "analyze")

    async def parse(self, request):
        return await self._answer(request, "parse")

    async def stage(self, request):
        """One stage's card; its answer's status is the HTTP status (CARD_STATUS), with the page's error shape
        when it is not ok."""
        from aiohttp import web

        name = request.match_info["name"]
        known = [sc.name for sc in self.backend.cards]
        if name not in known:
            return error_response(404, f"no model stage named {name!r} (registered: {', '.join(known)})")
        body, refused = await self._ask(request, "stage", name)
        if refused is not None:
            return refused
        answer = body["stages"][name]
        status = CARD_STATUS.get(answer["status"], 500)
        if status != 200:
            return error_response(status, answer.get("message") or answer["status"])
        return web.json_response(body)

    async def chain(self, request):
        """The whole chain on one photo (faceparse.ui.chain_api): 200, or the page's error shape."""
        from aiohttp import web

        try:
            image, _, name, opts = await self._photo(request)
        except imaging.RequestError as e:
            return error_response(e.status, e.message)
        try:
            body = await self.chain_route.run(image, opts.detect)
        except ChainUnavailable as e:
            return error_response(409, str(e))
        except NoFaceError as e:
            return error_response(422, f"{name}: {e}")
        return web.json_response({"image": {"name": name, "width": image.size[0], "height": image.size[1]},
                                  "detect": opts.detect, **body})

    async def healthz(self, request):
        from aiohttp import web

        return web.json_response({"ok": True, "mode": self.backend.mode})


def _too_large(size: int | None, limit: int) -> str:
    mb = lambda n: f"{n / 1024 / 1024:.1f} MB"  # noqa: E731
    got = f"{mb(size)}; " if size else ""
    return f"the file is too large ({got}the page takes at most {mb(limit)})"


def make_app(page: PageServer):
    from aiohttp import web

    @web.middleware
    async def headers(request, handler):
        try:
            resp = await handler(request)
        except web.HTTPException as e:
            if e.status >= 400 and request.path.startswith("/api/"):
                return error_response(e.status, e.reason or "refused", title=e.reason)
            raise
        except Exception:  # noqa: BLE001 - never a traceback to the page
            log.exception("faceparse ui: %s %s failed", request.method, request.path)
            return error_response(500, "the page's server failed on this request (see its log)", "Internal error")
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        return resp

    app = web.Application(client_max_size=page.max_upload + 65536, middlewares=[headers])
    app.router.add_get("/", page.index)
    app.router.add_get("/static/{name}", page.static)
    app.router.add_get("/api/info", page.info)
    app.router.add_get("/api/samples", page.sample_list)
    app.router.add_get("/api/samples/{name}", page.sample)
    app.router.add_post("/api/analyze", page.analyze)
    app.router.add_post("/api/parse", page.parse)
    app.router.add_post("/api/stages/{name}", page.stage)
    app.router.add_post("/api/chain", page.chain)
    app.router.add_get("/-/healthz", page.healthz)

    async def on_cleanup(app):
        page.backend.close()
        page.chain_route.close()

    app.on_cleanup.append(on_cleanup)
    return app


def serve(page: PageServer, host: str = "127.0.0.1", port: int = 8090, ready=None) -> None:
    """Run the page's server until interrupted; ``ready(url)`` is called once it listens."""
    from aiohttp import web

    def announce(_message: str) -> None:     # run_app prints once its sites listen
        if ready is not None:
            ready(f"http://{host}:{port}")

    web.run_app(make_app(page), host=host, port=port, access_log=None, print=announce, handle_signals=True,
                shutdown_timeout=5)
