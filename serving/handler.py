"""TorchServe handler for every model stage (no torchvision: TorchServe's vision handlers need it).

The .mar carries the model bundle (``weights.pt`` + ``bundle.json``) as extra files; the model is rebuilt
with ``faceparse.bundle.load_bundle`` (faceparse is installed where the workers run). handle = preprocess
(requests → ``Item``s, refusals answered per request) → inference + encoding by the stage's codec
(``faceparse.serve.codecs``: the parser answers label maps, the landmark stage 68 points) → the responses.

Requests (``POST /predictions/NAME[/VERSION]``):
  * body: raw JPEG/PNG bytes, or multipart with the image in field ``data`` | ``body`` | ``file``, or
    KServe v1 JSON ``{"instances": [{"data": "<base64>", "resolution": 512, "format": "json"}, ...]}``;
  * options (query parameters, form fields, or headers ``X-Resolution`` / ``X-Format`` / ``X-Detect``):
    ``resolution`` 64..1024 (default: the bundle's input size), ``format`` — parser: png (label map, one
    channel, pixel = class id; the default) | overlay (RGB PNG) | json (per-class pixel fractions, the
    detected faces); landmarks: json (68 points per face in the photo's pixels; the default) | overlay (the
    points drawn); the other stages' formats: their codecs. Every stage: ``detect`` true (default;
    model-config ``handler.detect``) finds and frames every face of a photo and answers in the photo's
    pixels (a map of the photo's shape, long side ``resolution``, default the photo's own up to 1024; points
    and renders where the faces are; no face → 422 with a JSON message); false: the image is an aligned
    face crop, taken whole (maps at ``resolution``²). A square photo of one face already framed like
    CelebAMask-HQ is taken whole either way (``faceparse.photos``).
Bad requests get a 4xx with a JSON ``{"code", "type", "message"}`` body, per request inside a batch
(``context.set_response_status(code, phrase, idx)``); the rest of the batch is answered normally.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import random
import time

import torch
from ts.torch_handler.base_handler import BaseHandler
from ts.utils.util import PredictionException

from faceparse.bundle import load_bundle
from faceparse.labels import get_table
from faceparse.models import preprocess
from faceparse.runtime import tick
from faceparse.serve import imaging
from faceparse.serve.codecs import Item, codec_for
from faceparse.serve.imaging import RequestError

logger = logging.getLogger(__name__)
IMAGE_FIELDS = ("data", "body", "file")


class FaceParseHandler(BaseHandler):
    def initialize(self, context):
        from faceparse.runtime import own_process

        own_process()  # the worker process is ours (see faceparse.runtime)
        props = context.system_properties
        model_dir = props.get("model_dir")
        cfg = dict((getattr(context, "model_yaml_config", None) or {}).get("handler") or {})
        # precision: the bundle's ("precision": "int8" from `faceparse quantize`), unless the model config's
        # handler.precision overrides it (fp32 | int8)
        self.model, self.meta = load_bundle(model_dir, precision=cfg.get("precision"))
        self.device = torch.device("cpu")
        self.stage = str(self.meta.get("stage", "parser"))
        self.codec = codec_for(self.stage)
        self.table = get_table(self.meta["label_table"]) if "label_table" in self.meta else None
        self.palette = self.table.palette() if self.table is not None else None
        self.input_size = int(self.meta.get("input_size", 256))
        self.min_res = int(cfg.get("min_resolution", imaging.MIN_RESOLUTION))
        self.max_res = int(cfg.get("max_resolution", imaging.MAX_RESOLUTION))
        self.default_res = int(cfg.get("default_resolution", self.input_size))
        self.max_pixels = int(cfg.get("max_pixels", imaging.DEFAULT_MAX_PIXELS))
        self.detect = bool(cfg.get("detect", True))   # parser: photos' faces found and aligned unless X-Detect: false
        from PIL import Image

        # PIL's own bomb guard at least as strict as ours (its error fires at 2× this value).
        Image.MAX_IMAGE_PIXELS = self.max_pixels
        manifest = getattr(context, "manifest", None) or {}
        self.version = str((manifest.get("model") or {}).get("modelVersion", ""))
        # Chaos / canary tests only: bundle.json {"fault_injection": {"error_rate": p, "delay_ms": d}} is obeyed
        # only when the server was started with FACEPARSE_FAULT_INJECTION=1 (never in a normal deployment).
        allowed = os.environ.get("FACEPARSE_FAULT_INJECTION") == "1"
        self.fault = dict(self.meta.get("fault_injection") or {}) if allowed else {}
        if self.meta.get("fault_injection") and not allowed:
            logger.warning("bundle.json asks for fault injection; ignored (FACEPARSE_FAULT_INJECTION is not 1)")
        self.manifest = manifest
        # KServe's TorchServe runtime selects its request envelope through this variable
        # (enable_envvars_config=true); with the v1 envelope we receive the decoded instances, not requests.
        self.envelope = os.environ.get("TS_SERVICE_ENVELOPE", "").strip().lower() or None
        with torch.inference_mode():  # warm-up: allocations and the first-call overheads out of request time
            x = torch.zeros(1, 3, self.input_size, self.input_size)
            self.codec.warmup(self.model, x, self.min_res)
        self.initialized = True
        logger.info("faceparse handler ready: stage=%s version=%s precision=%s", self.stage, self.version,
                    self.meta.get("precision", "fp32"))

    # --- request parsing --------------------------------------------------------------------------
    def _headers(self, context, idx: int) -> dict:
        try:
            return dict(context.get_all_request_header(idx) or {})
        except Exception:  # no request processor (unit tests without a context)
            return {}

    def _parse(self, values: dict, headers: dict, request: int, instance: int | None = None) -> Item:
        """One image + options → an Item (RequestError for anything the client got wrong)."""
        opts = imaging.parse_options(values, headers, default_resolution=self.default_res,
                                     min_resolution=self.min_res, max_resolution=self.max_res,
                                     formats=self.codec.formats, default_detect=self.detect)
        raw = next((values[k] for k in IMAGE_FIELDS if values.get(k) is not None), None)
        if raw is None:
            raise RequestError(400, "no image in the request: send JPEG/PNG bytes as the body or as "
                                    "multipart field 'data'")
        image = imaging.decode_image(imaging.payload_bytes(raw), self.max_pixels)
        # the photo's faces are found here, so a photo without one is refused (422) like any bad request
        plan = self.codec.locate(image, opts, self.input_size, self.max_res) if hasattr(self.codec, "locate") else None
        tensor = preprocess(image, self.input_size) if plan is None or plan.whole else None
        return Item(request, instance, image, tensor, opts, plan)

    def _fail(self, context, idx: int, err: RequestError) -> bytes:
        # The reason phrase must stay ASCII: TorchServe 0.12 frames it with len(str), not the UTF-8 byte
        # count, so a "×" in it corrupts the worker→frontend stream ("Worker died"). The message goes in the body.
        context.set_response_status(err.status, err.phrase, idx)
        context.set_response_content_type(idx, "application/json")
        return err.body()

    # --- the batch ----------------------------------------------------------------------------------
    def handle(self, data, context):
        t0 = time.perf_counter()
        tick()   # the worker's threads to the cores other processes leave free (faceparse.runtime)
        self.context = context
        if self.fault:
            if float(self.fault.get("delay_ms", 0)) > 0:
                time.sleep(float(self.fault["delay_ms"]) / 1000)
            if random.random() < float(self.fault.get("error_rate", 0)):
                raise RuntimeError("fault injection: bundle.json asks this model to fail")
        if self.envelope == "kserve":
            return self._handle_instances(data, context, t0)
        results: list = [None] * len(data)
        items: list[Item] = []
        kserve: dict[int, list] = {}  # request idx → instance outputs
        for i, row in enumerate(data):
            headers = self._headers(context, i)
            try:
                if not isinstance(row, dict):
                    raise RequestError(400, "malformed request")
                body = row.get("body")
                if isinstance(body, dict) and "instances" in body:       # KServe v1 JSON
                    inst = body["instances"]
                    if not isinstance(inst, list) or not inst or len(inst) > 16:
                        raise RequestError(400, "'instances' must be a list of 1..16 objects")
                    parsed = []
                    for j, one in enumerate(inst):
                        if not isinstance(one, dict):
                            one = {"data": one}
                        try:
                            parsed.append(self._parse({**one, "data": one.get("data", one.get("image"))}, {}, i, j))
                        except RequestError as e:
                            raise RequestError(e.status, f"instances[{j}]: {e.message}") from None
                    kserve[i] = [None] * len(parsed)
                    items.extend(parsed)
                elif isinstance(body, (dict, list)):
                    raise RequestError(400, "JSON body: send the image as raw JPEG/PNG bytes, multipart, or "
                                            "KServe v1 {\"instances\": [{\"data\": base64}]}")
                else:
                    items.append(self._parse(row, headers, i))
            except RequestError as e:
                results[i] = self._fail(context, i, e)
                kserve.pop(i, None)
                items = [it for it in items if it.request != i]

        for it, (out, ctype) in zip(items, self._run(items)):
            i = it.request
            if it.instance is None:
                results[i] = out
                context.set_response_content_type(i, ctype)
                if self.version:
                    context.set_response_header(i, "X-Model-Version", self.version)
            else:
                kserve[i][it.instance] = self._jsonable(out, ctype, it.options)
        for i, outs in kserve.items():
            results[i] = json.dumps({"predictions": outs, "model_version": self.version}).encode()
            context.set_response_content_type(i, "application/json")
        if getattr(context, "metrics", None) is not None:
            context.metrics.add_time("HandlerTime", round((time.perf_counter() - t0) * 1000, 2), None, "ms")
        return results

    def _run(self, items: list[Item]) -> list[tuple[bytes, str]]:
        """The stage's codec: the model on every item (batched) → (encoded answer, content type) each."""
        if not items:
            return []
        with torch.inference_mode():
            out = self.codec.run(self.model, self.meta, items, self.palette, self.table, self.version)
        # close the compute window here, so the idle time until the next batch is a window of its own (one the
        # governor ignores when long): measured from the batch's start only, a worker idle while another
        # process held both cores ran its next batch on one thread (TorchServe 0.67x in-process at c = 16)
        tick()
        return out

    @staticmethod
    def _jsonable(out: bytes, ctype: str, opts) -> dict:
        if ctype == "application/json":
            return json.loads(out)
        return {"format": opts.format, "resolution": opts.resolution, "b64": base64.b64encode(out).decode()}

    def _handle_instances(self, data, context, t0: float) -> list:
        """KServe v1 envelope: ``data`` is the instances of ONE request; any bad instance → the whole request
        is refused with its 4xx (PredictionException) — per-instance statuses do not exist in that protocol."""
        items = []
        for j, one in enumerate(data or []):
            if not isinstance(one, dict):
                one = {"data": one}
            try:
                items.append(self._parse({**one, "data": one.get("data", one.get("image"))}, {}, 0, j))
            except RequestError as e:
                raise PredictionException(f"instances[{j}]: {e.message}", e.status) from None
        if not items:
            raise PredictionException("no instances in the request", 400)
        outs = [self._jsonable(out, ctype, it.options) for it, (out, ctype) in zip(items, self._run(items))]
        if getattr(context, "metrics", None) is not None:
            context.metrics.add_time("HandlerTime", round((time.perf_counter() - t0) * 1000, 2), None, "ms")
        return outs
