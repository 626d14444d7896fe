"""Helpers for serving tests, the load test and demos: tiny bundles, free loopback ports, a bounded traffic
generator. Not used by the serving path itself."""
from __future__ import annotations

import io
import json
import random
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import requests
import torch
from PIL import Image

from ..bundle import load_bundle, save_bundle
from ..config import load_params
from ..models import build_model, preprocess
from ..specks import labels_from_logits
from ..stages import bundle_input_size, for_stage, get_stage
from . import server
from .client import Client
from .server import HOST, _port_free

TINY = {"width": 8, "groups": [1, 1, 1], "norm": "instance", "decoder": "liif", "unfold": True, "reduce": [16],
        "hidden": [16], "ensemble": True, "query_chunk": 16384}


def tiny_bundle(directory, seed: int = 0, cfg: dict | None = None, num_classes: int = 19, noise_from=None,
                noise: float = 0.0, **meta) -> Path:
    """A random FP-LIIF bundle; ``noise_from`` = another bundle dir whose weights (plus ``noise`` × N(0,1))
    are used instead (a 'retrained' challenger that nearly agrees with it). Extra ``meta`` goes into
    bundle.json (e.g. ``fault_injection={"error_rate": 1.0}``)."""
    if noise_from is not None:
        return variant_bundle(noise_from, directory, seed=seed, noise=noise, **meta)
    cfg = dict(cfg or TINY)
    torch.manual_seed(seed)
    model = build_model(cfg, num_classes)
    return save_bundle(directory, model, {"model_config": cfg, "num_classes": num_classes,
                                          "label_table": "celebamask-hq", **meta})


def variant_bundle(source, directory, seed: int = 0, noise: float = 0.0, **meta) -> Path:
    """A copy of any stage's bundle ``source`` whose weights get ``noise`` × N(0, 1) (a 'retrained' challenger
    that nearly agrees with it); extra ``meta`` goes into its bundle.json."""
    model, base = load_bundle(source)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * noise)
    return save_bundle(directory, model, {**base, **meta})


def reference_labels(bundle_dir, images, resolution: int | None = None) -> list:
    """The bundle's own in-process prediction, what every served / predicted label map must equal: each image
    (encoded bytes, a path or a PIL image; read with plain PIL, no EXIF handling — the real test photos have
    none) preprocessed alone (``faceparse.models.preprocess`` to the bundle's input size), decoded at
    ``resolution`` (default: the input size), argmax over classes, specks dropped (``faceparse.specks``) →
    (R, R) uint8 arrays."""
    model, meta = load_bundle(bundle_dir)
    size = bundle_input_size(meta)
    res = int(resolution or size)
    out = []
    with torch.inference_mode():
        for im in images:
            if isinstance(im, (bytes, bytearray)):
                im = Image.open(io.BytesIO(bytes(im)))
            elif not isinstance(im, Image.Image):
                im = Image.open(im)
            x = preprocess(im.convert("RGB"), size)[None]
            out.append(labels_from_logits(model(x, out_size=res))[0])
    return out


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for connect() / bind(0) ports."""
    try:
        lo, hi = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port(exclude: Iterable[int] = ()) -> int:
    """A free loopback port drawn at random *outside* the kernel's ephemeral range. Nothing holds it until the
    server binds it (seconds later: a JVM starts first), but every connect() and bind(0) on the machine is
    given ports from the ephemeral range only, so none of them can take it meanwhile."""
    lo, hi = ephemeral_range()
    pool = range(20000, lo) if lo - 20000 >= 2000 else range(hi + 1, 65536) if 65535 - hi >= 2000 else None
    rng = random.SystemRandom()
    for _ in range(200 if pool is not None else 0):
        port = rng.choice(pool)
        if port not in exclude and _port_free(port):
            return port
    with socket.socket() as s:  # no room outside the ephemeral range: let the kernel choose
        s.bind((HOST, 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports outside the kernel's ephemeral range (``free_port``): a test picks
    them long before the servers bind them, and no client socket on the machine can be handed one meanwhile."""
    ports: list[int] = []
    while len(ports) < n:
        ports.append(free_port(exclude=ports))
    return ports


def port_overrides() -> list[str]:
    i, m, x, r = free_ports(4)
    return [f"serve.inference_port={i}", f"serve.management_port={m}", f"serve.metrics_port={x}",
            f"serve.rollout.router_port={r}"]


class Traffic:
    """Background load on an endpoint: ``threads`` clients POSTing ``image`` until stopped or ``max_requests``.
    Records (t, status, version header, arm) per request."""

    def __init__(self, state: dict[str, Any], image: bytes, threads: int = 3, resolution: int = 64,
                 max_requests: int = 20000, base: str | None = None):
        self.state, self.image, self.threads, self.resolution = state, image, threads, resolution
        self.base = base or state["endpoint_url"]
        self.max_requests = max_requests
        self.records: list[tuple[float, int, str | None, str | None]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pool: list[threading.Thread] = []

    def _run(self) -> None:
        cl = Client.from_state(self.state, timeout=120)
        while not self._stop.is_set():
            with self._lock:
                if len(self.records) >= self.max_requests:
                    return
            try:
                r = cl.predict(self.state["model_name"], self.image, resolution=self.resolution, base=self.base)
                rec = (time.time(), r.status_code, r.headers.get("X-Model-Version"), r.headers.get("X-Canary-Arm"))
            except Exception as e:  # noqa: BLE001 - a failed connection is a failed request
                rec = (time.time(), -1, None, type(e).__name__)
            with self._lock:
                self.records.append(rec)

    def __enter__(self) -> "Traffic":
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._pool.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._pool:
            t.join(timeout=180)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            recs = list(self.records)
        by = Counter((r[3] or "direct", r[1]) for r in recs)
        return {"n": len(recs), "by_arm_status": {f"{a}:{s}": c for (a, s), c in sorted(by.items(), key=str)},
                "versions": dict(Counter(r[2] for r in recs if r[1] == 200))}


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=str)


def landmark_bundle(directory, input_size: int = 64, seed: int = 0) -> Path:
    """A random MobileNetV3-Small ×0.25 landmark bundle (integral head, one refinement look) framed as the
    photo path frames a detected face."""
    torch.manual_seed(seed)
    meta = {"stage": "landmarks", "num_points": 68, "input_size": input_size,
            "framing": {"mode": "face", "jitter": 0.0, "eval_jitter": 0.0, "loose": 0.0},
            "model_config": {"preset": "small", "arch": "small", "width": 0.25, "num_points": 68, "dropout": 0.0,
                             "head": "integral", "refine": 1}}
    return save_bundle(directory, get_stage("landmarks").build_model(meta), meta)


def recon3d_bundle(directory, input_size: int = 64, seed: int = 0) -> Path:
    """A width-8 recon3d network with a small random head (not the zero init: the answers then vary with the
    photo, so agreement with the in-process model is a real check)."""
    st = get_stage("recon3d")
    meta = {"stage": "recon3d", "input_size": input_size, **st.data_meta({}, {}),
            "model_config": st.model_config({"model": {"preset": "small", "overrides": {"width": 8}}})}
    torch.manual_seed(seed)
    model = st.build_model(meta)
    with torch.no_grad():
        model.backbone.fc.weight.normal_(0.0, 1e-3)
    return save_bundle(directory, model, meta)


def completion_bundle(directory, params: dict[str, Any], parser_size: int = 64, landmark_size: int = 80) -> Path:
    """A tiny random parser and landmark bundle in ``directory``, composed as `faceparse compose` does into
    ``directory/completion`` (``params``: the whole params; only registry names / files are read)."""
    d = Path(directory)
    tiny_bundle(d / "parser", input_size=parser_size, stage="parser")
    landmark_bundle(d / "landmarks", input_size=landmark_size)
    comp = {**(params.get("completion") or {}), "train": {"bundle_dir": str(d / "completion")}}
    get_stage("completion").compose({**params, "completion": comp}, {"parser": str(d / "parser"),
                                                                     "landmarks": str(d / "landmarks")})
    return d / "completion"


def post_prediction(st: dict[str, Any], body: bytes, headers: dict | None = None, token: str | None = "ok",
                    timeout: float = 120):
    """POST ``body`` to a running server's model (``st`` from server.start) with its token (``token="ok"``),
    another token, or none (``None``)."""
    key = server.token(st["run_dir"]) if token == "ok" else token
    auth = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(f"{st['endpoint_url']}/predictions/{st['model_name']}", data=body,
                         headers={**auth, **(headers or {})}, timeout=timeout)


def assert_refused(st: dict[str, Any], body: bytes, headers: dict, status: int, good: bytes) -> None:
    """The request is answered ``status`` with a JSON message, and the server still answers ``good`` with 200."""
    r = post_prediction(st, body, headers)
    assert r.status_code == status, r.text[:300]
    assert json.loads(r.text)["message"]
    assert post_prediction(st, good).status_code == 200


def serve_stage(params_file, stage: str, bundle, tmp):
    """A served model stage for a test module: yields (server state, bundle) on free ports; stops it after."""
    params = for_stage(load_params(params_file, port_overrides()), stage)
    st = server.start(params, model=str(bundle), run_dir=Path(tmp) / "run", model_store=Path(tmp) / "store")
    try:
        yield st, bundle
    finally:
        server.stop(Path(tmp) / "run")


# The Content-Type matrix every served stage is held to, through the router (the parser:
# tests/integration/test_readme_requests.py; completion, fisn: their test_serving_* modules). The request
# handling is the stages' shared path, so each must answer a raw photo whatever the header says, and answer
# a client's mistake with a 4xx and a message, never a 5xx.
PHOTO_CONTENT_TYPES = [None, "application/x-www-form-urlencoded", "text/plain", "image/jpeg",
                       "application/octet-stream", "image/png", "garbage/unknown; x=1"]
CLIENT_MISTAKES = [
    (b"not an image at all", "application/x-www-form-urlencoded"),
    (b"data=%FF%D8%FF", "application/x-www-form-urlencoded"),
    (b"--xyz\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\nabc", "multipart/form-data; boundary=xyz"),
    (b"no boundary here", "multipart/form-data"),
    (b"{\"instances\": 3", "application/json"),
    (b"[1, 2, 3]", "application/json"),
    (b"", "image/jpeg"),
]


def assert_client_mistake(st: dict[str, Any], body: bytes, ctype: str, good: bytes) -> None:
    """One of CLIENT_MISTAKES is answered with a 4xx and a JSON message, and the server still answers ``good``."""
    r = post_prediction(st, body, {"Content-Type": ctype})
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert json.loads(r.text)["message"]
    assert post_prediction(st, good).status_code == 200


def assert_token_required(st: dict[str, Any], good: bytes) -> None:
    """A request without the token is refused with a 4xx."""
    r = post_prediction(st, good, token=None)
    assert 400 <= r.status_code < 500, r.status_code


def constant_class(bundle_dir, cls: int = 1) -> Path:
    """Rewrite a tiny LIIF bundle so that it answers ``cls`` at every pixel (last layer: zero weights, a
    one-hot bias): a parsed face region is then exactly where the crops land, a test can check geometry."""
    model, meta = load_bundle(bundle_dir)
    n = int(meta["num_classes"])
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == n][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.nn.functional.one_hot(torch.tensor(cls), n).float() * 10)
    return save_bundle(bundle_dir, model, meta)


def group_photo(samples_dir, size=(1200, 560)):
    """A wide 'group photo' from two real CelebAMask-HQ faces: sample 1 small on the left, sample 2 larger
    and turned 15° on the right, on a plain backdrop → (RGB PIL image, [(centre x, centre y, pasted side)])."""
    canvas = Image.new("RGB", size, (90, 120, 150))
    small = Image.open(Path(samples_dir) / "1.jpg").convert("RGB").resize((300, 300), Image.BICUBIC)
    large = Image.open(Path(samples_dir) / "2.jpg").convert("RGB").resize((420, 420), Image.BICUBIC)
    canvas.paste(small, (60, 200))
    canvas.paste(large.rotate(15, resample=Image.BICUBIC), (700, 40))
    return canvas, [(210.0, 350.0, 300.0), (910.0, 250.0, 420.0)]


def faceless_photos() -> dict:
    """Photos without a face: a colour gradient and a landscape-like scene (sky, ridge, grass, noise)."""
    h, w = 360, 640
    yy, xx = np.mgrid[0:h, 0:w]
    grad = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), 128)], -1).astype(np.uint8)
    rng = np.random.default_rng(0)
    land = np.stack([np.linspace(120, 200, h)[:, None].repeat(w, 1), np.linspace(160, 220, h)[:, None].repeat(w, 1),
                     np.full((h, w), 240.0)], -1)
    ridge = (h * 0.45 + np.cumsum(rng.normal(0, 3, w))).astype(int)
    for x in range(w):
        land[ridge[x]:, x] = [90, 100, 110]
    land[int(h * 0.7):] = [60, 140, 50]
    land = np.clip(land + rng.normal(0, 8, land.shape), 0, 255).astype(np.uint8)
    return {"gradient": Image.fromarray(grad), "landscape": Image.fromarray(land)}
