"""Where the page's answers come from: the models in this process, or a running endpoint.

The page shows one card per registered model stage, in registration order (``faceparse.stages.stage_names``);
what a card runs and shows is the stage's own (its package's ``ui`` module: :mod:`faceparse.ui.cards`) —
nothing here knows a stage by name. Both backends answer the same JSON, one entry per stage, each with a
``status``:

* ``ok`` — the card's payload (images, label maps, lines; see faceparse.ui.cards) plus ``source`` (which
  model answered: its reference, its version and, through an endpoint, the canary arm from the router's
  ``X-Canary-Arm`` header) and ``model_ms`` (time spent on it);
* ``unavailable`` — the stage has no model here (not given, not shipped, no registry champion, not served by
  the endpoint) and ``message`` says why and what to run (``no_model``: nothing was found to load); nothing is
  made up in its place;
* ``no_face`` — the stage found no face in the photo;
* ``no_card`` — the stage has no card on the page (its package has no ``ui`` module);
* ``error`` — the stage failed on this photo; ``message`` says how.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..labels import get_table
from ..photos import NoFaceError
from ..registry import RegistryError
from ..stages import bundle_input_size, get_stage
from .cards import Loaded, NoModel, Options, StageCard, stage_cards

# Imports inside functions here: the page in endpoint mode never loads torch (tests/code/test_light_imports.py)

FACE_DETECTION = ("Each stage here finds the faces in a photo (MTCNN), reads each one aligned and lays its answer back "
                  "on the photo (boxes drawn in-process); a photo without a face is answered as such.")
MESSAGE_CHARS = 600
WHY_CHARS = 240       # a load failure's reason inside a longer message


class EndpointDown(RuntimeError):
    """The endpoint did not answer at all (refused / reset connection)."""


class StageError(RuntimeError):
    """One stage failed on one photo; the message is for the page."""


class UnknownStage(KeyError):
    """No registered stage of that name."""


def _short(e: BaseException | str, limit: int = MESSAGE_CHARS) -> str:
    s = str(e).strip() or type(e).__name__
    return s if len(s) <= limit else s[:limit - 1] + "…"


def ok(payload: dict[str, Any], source: dict[str, Any], ms: float) -> dict[str, Any]:
    return {"status": "ok", **payload, "source": source, "model_ms": round(ms, 1)}


def unavailable(message: str, no_model: bool = False) -> dict[str, Any]:
    return {"status": "unavailable", "message": _short(message), "no_model": bool(no_model)}


def failed(message: str) -> dict[str, Any]:
    return {"status": "error", "message": _short(message)}


def no_face(message: str) -> dict[str, Any]:
    return {"status": "no_face", "message": _short(message)}


def no_card(message: str) -> dict[str, Any]:
    return {"status": "no_card", "message": _short(message)}


def table_info(name: str) -> dict[str, Any]:
    t = get_table(name)
    return {"label_table": t.name, "classes": list(t.classes), "palette": t.palette().astype(int).tolist()}


def _card(cards: list[StageCard], name: str) -> StageCard:
    for sc in cards:
        if sc.name == name:
            return sc
    raise UnknownStage(name)


# --- the models in this process ------------------------------------------------------------------------

class InProcess:
    """Each card's model loaded here, in registration order: ``refs`` {stage: bundle dir | models:/ URI |
    None}; None = the card's default (``Card.default_ref``: the stage's registry champion, or what the stage
    ships). A card's ``load`` is given the references of the stages loaded before it (the completion is
    composed from the parser and landmark models, unless given a bundle of its own). A model that cannot be
    loaded leaves its stage ``unavailable`` with the reason (and, when there is none to load, what to run);
    the others still answer. Inference runs on one worker thread, one request at a time."""

    mode = "in-process"

    def __init__(self, raw_params: dict[str, Any], refs: dict[str, str | None] | None = None):
        self.raw = raw_params or {}
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="faceparse-ui")
        self.cards = stage_cards()
        self.loaded: dict[str, Loaded] = {}
        self.stage_info: dict[str, dict[str, Any]] = {}
        given = dict(refs or {})
        for sc in self.cards:
            if sc.card is None:
                self.stage_info[sc.name] = {"available": False, "card": False, "model": None, "version": None,
                                            "message": sc.message}
            else:
                self._load(sc, given.get(sc.name))
        table = next((str(m.meta["label_table"]) for m in self.loaded.values() if m.meta.get("label_table")),
                     "celebamask-hq")
        self.table = table_info(table)

    def _load(self, sc: StageCard, given: str | None) -> None:
        card, name = sc.card, sc.name
        ref = given or card.default_ref(self.raw, name)
        info = {"available": False, "card": True, "model": ref, "version": None, "no_model": False}
        try:
            m = card.load(self.raw, name, ref, {k: v.ref for k, v in self.loaded.items()})
        except NoModel as e:
            self.stage_info[name] = {**info, "no_model": True, "message": str(e) or card.missing(name, ref)}
            return
        except (RegistryError, FileNotFoundError) as e:
            if given:          # the reference given does not resolve: said as such
                self.stage_info[name] = {**info, "message": f"cannot load {ref}: {_short(e, WHY_CHARS)}"}
            else:              # nothing shipped, no champion: what to run
                self.stage_info[name] = {**info, "no_model": True,
                                         "message": card.missing(name, ref, _short(e, WHY_CHARS))}
            return
        except Exception as e:  # noqa: BLE001 - any load failure leaves this stage unavailable, with its reason
            why = _short(e, WHY_CHARS)
            self.stage_info[name] = {**info, "message": f"cannot load {ref}: {why}" if ref else why}
            return
        self.loaded[name] = m
        self.stage_info[name] = {**info, "available": True, "model": m.ref, "version": m.version, "message": None,
                                 "input_size": bundle_input_size(m.meta)}

    def info(self) -> dict[str, Any]:
        return {"mode": self.mode, "endpoint": None, "endpoint_ok": None, "endpoint_message": None,
                "stages": self.stage_info, "cards": [sc.info() for sc in self.cards], **self.table}

    def _source(self, stage: str) -> dict[str, Any]:
        i = self.stage_info[stage]
        return {"model": i["model"], "version": i["version"], "arm": None, "via": "in-process (no canary)"}

    # --- cards (on the worker thread) --------------------------------------------------------------------
    def _run(self, sc: StageCard, image, opts: Options) -> dict[str, Any]:
        import torch    # (here: the page in endpoint mode never needs it)

        from ..runtime import tick

        if sc.card is None:
            return no_card(sc.message or "no card")
        m = self.loaded.get(sc.name)
        if m is None:
            i = self.stage_info[sc.name]
            return unavailable(i["message"], i.get("no_model", False))
        tick()   # the intra-op pool sized to the cores other processes leave free (faceparse.runtime)
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                payload = sc.card.run(m, image, opts)
        except NoFaceError as e:
            return no_face(str(e))
        except Exception as e:  # noqa: BLE001 - one stage's failure is shown on the page, the others still answer
            return failed(f"{sc.name} failed on this photo: {type(e).__name__}: {_short(e)}")
        return ok(payload, self._source(sc.name), (time.perf_counter() - t0) * 1000)

    def _many(self, cards: list[StageCard], image, opts: Options) -> dict[str, Any]:
        return {sc.name: self._run(sc, image, opts) for sc in cards}

    async def _on_worker(self, cards: list[StageCard], image, resolution: int, detect: bool) -> dict[str, Any]:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._many, cards, image,
                                                                Options(int(resolution), bool(detect)))

    async def analyze(self, image, data: bytes, resolution: int, detect: bool = True) -> dict[str, Any]:
        """Every stage's card on one photo."""
        return await self._on_worker(self.cards, image, resolution, detect)

    async def parse(self, image, data: bytes, resolution: int, detect: bool = True) -> dict[str, Any]:
        """The cards answering at the output resolution alone (the slider moved)."""
        return await self._on_worker([sc for sc in self.cards if sc.card and sc.card.resizable], image, resolution,
                                     detect)

    async def stage(self, name: str, image, data: bytes, resolution: int, detect: bool = True) -> dict[str, Any]:
        """One stage's card (UnknownStage: no stage of that name)."""
        return await self._on_worker([_card(self.cards, name)], image, resolution, detect)

    async def health(self) -> tuple[bool | None, str | None]:
        return None, None

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


# --- a running endpoint --------------------------------------------------------------------------------

class Endpoint:
    """A running endpoint (``faceparse serve start``'s router, or TorchServe itself): each stage whose card
    says how (``Card.endpoint``) is asked at ``POST <url>/predictions/<model name>`` with the bearer ``token``
    (or, given ``serve_dir``, the server's own key file, renewed when TorchServe refuses an expired key);
    ``names`` {stage: model name}, default each stage's registry model name. The answer's ``X-Model-Version``
    and ``X-Canary-Arm`` headers are shown as the page's "which version / which arm answered"."""

    mode = "endpoint"

    def __init__(self, url: str, names: dict[str, str], token: str | None = None, serve_dir: str | None = None,
                 label_table: str = "celebamask-hq", timeout: float = 120.0):
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
        self.cards = stage_cards()
        self.named = {k for k, v in names.items() if v}     # the names the caller gave (--endpoint-model STAGE=NAME)
        self.names = {sc.name: names.get(sc.name) or get_stage(sc.name).info.model_name
                      for sc in self.cards if sc.card is not None and sc.card.endpoint is not None}
        self.token = token
        self.timeout = float(timeout)
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

    def _call(self, sc: StageCard, data: bytes, opts: Options, size: tuple[int, int]) -> dict[str, Any]:
        """One stage's card from the endpoint: one request per format its card asks for."""
        stage, card = sc.name, sc.card
        if card is None:
            return no_card(sc.message or "no card")
        if card.endpoint is None:
            return unavailable(f"the {stage} stage's card is drawn from the models in this process only "
                               "(`faceparse ui page --in-process`)")
        name = self.names.get(stage)
        if not name:
            return unavailable(f"no model name for the {stage} stage")
        ask = card.endpoint
        resolution = opts.resolution if card.resizable else ask.resolution
        answers: dict[str, bytes] = {}
        first, ms = None, 0.0
        for fmt in ask.formats:
            try:
                r, took = self._post(stage, data, fmt, resolution, opts.detect)
            except StageError as e:
                return failed(str(e))
            ms += took
            if r.status_code != 200:
                return self._refused(stage, name, r)
            first = first or r
            answers[fmt] = r.content
        source = {"model": name, "version": first.headers.get("X-Model-Version"),
                  "arm": first.headers.get("X-Canary-Arm"), "via": self.url}
        try:
            return ok(ask.decode(answers, size), source, ms)
        except Exception as e:  # noqa: BLE001 - an answer we cannot read is the endpoint's fault
            return failed(f"the endpoint's answer for {name} could not be read: {_short(e)}")

    def _refused(self, stage: str, name: str, r) -> dict[str, Any]:
        from ..serve.client import token_refused

        msg = _message(r)
        if token_refused(r):
            return failed(f"the endpoint refused the token (HTTP {r.status_code}): {msg} — give --token, or "
                          "--serve-dir to use the server's own key file")
        if r.status_code == 404:
            hint = f"; --endpoint-model {stage}=NAME names it" if stage in self.named else ""
            return unavailable(f"this endpoint serves no model named {name!r} ({msg}){hint}", no_model=True)
        if r.status_code == 422 and "no face" in msg:
            return no_face(msg)
        if r.status_code < 500:
            return failed(f"the endpoint refused the photo (HTTP {r.status_code}): {msg}")
        return failed(f"the endpoint failed (HTTP {r.status_code}): {msg}")

    async def _in_pool(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    async def _gather(self, cards: list[StageCard], image, data: bytes, resolution: int,
                      detect: bool) -> dict[str, Any]:
        opts = Options(int(resolution), bool(detect))
        keys = [sc.name for sc in cards]
        results = await asyncio.gather(*(self._in_pool(self._call, sc, data, opts, image.size) for sc in cards),
                                       return_exceptions=True)
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
        asked = [sc for sc in self.cards if sc.card is not None and sc.name in self.names]
        out = await self._gather(asked, image, data, resolution, detect) if asked else {}
        return {sc.name: out.get(sc.name) or self._call(sc, data, Options(int(resolution), bool(detect)), image.size)
                for sc in self.cards}

    async def parse(self, image, data: bytes, resolution: int, detect: bool = True) -> dict[str, Any]:
        return await self._gather([sc for sc in self.cards if sc.card and sc.card.resizable], image, data,
                                  resolution, detect)

    async def stage(self, name: str, image, data: bytes, resolution: int, detect: bool = True) -> dict[str, Any]:
        return await self._gather([_card(self.cards, name)], image, data, resolution, detect)

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
        stages = {}
        for sc in self.cards:
            if sc.name in self.names:
                stages[sc.name] = {"available": None, "card": True, "model": self.names[sc.name], "version": None,
                                   "message": "asked of the endpoint with each photo"}
            else:
                stages[sc.name] = {"available": False, "card": sc.card is not None, "model": None, "version": None,
                                   "message": sc.message or "drawn from the models in this process only"}
        return {"mode": self.mode, "endpoint": self.url, "stages": stages, "cards": [sc.info() for sc in self.cards],
                **self.table}

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
