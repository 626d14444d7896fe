"""HTTP helpers for a local TorchServe started by ``faceparse serve start`` (token authorization on).

The keys live in ``<run_dir>/key_file.json`` (written by TorchServe into its working directory):
``{"management": {"key", "expiration time"}, "inference": {...}, "API": {"key"}}``. Inference and
management keys expire (``token_expiration_min``, 60 by default); on a refused token (TorchServe 0.12 answers 400 ``InvalidKeyException``, not 401) the client asks
``GET /token?type=...`` (with the API key) for a fresh one, which TorchServe writes back into the file.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import requests

KEY_FILE = "key_file.json"


class ServeError(RuntimeError):
    """TorchServe answered an unexpected status (the message names the call and the answer)."""


class Client:
    def __init__(self, inference_url: str, management_url: str, key_file: str | Path | None,
                 metrics_url: str | None = None, timeout: float = 60.0):
        self.inference_url = inference_url.rstrip("/")
        self.management_url = management_url.rstrip("/")
        self.metrics_url = (metrics_url or "").rstrip("/") or None
        self.key_file = Path(key_file) if key_file else None
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False   # loopback only: never through an HTTP proxy from the environment

    @classmethod
    def from_state(cls, state: dict[str, Any], **kw) -> "Client":
        return cls(state["inference_url"], state["management_url"], state.get("key_file"),
                   state.get("metrics_url"), **kw)

    # --- keys -------------------------------------------------------------------------------------------
    def keys(self) -> dict[str, str]:
        if self.key_file is None:
            return {}
        for _ in range(20):  # the file is rewritten in place when a key is renewed: retry a torn read
            try:
                raw = json.loads(self.key_file.read_text())
                return {k.lower(): v.get("key") for k, v in raw.items() if isinstance(v, dict)}
            except (json.JSONDecodeError, FileNotFoundError):
                time.sleep(0.1)
        raise ServeError(f"cannot read the TorchServe key file {self.key_file}")

    def auth(self, kind: str) -> dict[str, str]:
        key = self.keys().get(kind)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def renew(self, kind: str) -> None:
        api = self.keys().get("api")
        if api:
            self.session.get(f"{self.management_url}/token", params={"type": kind},
                             headers={"Authorization": f"Bearer {api}"}, timeout=self.timeout)

    def _call(self, kind: str, method: str, url: str, **kw) -> requests.Response:
        kw.setdefault("timeout", self.timeout)
        headers = dict(kw.pop("headers", None) or {})
        r = self.session.request(method, url, headers={**headers, **self.auth(kind)}, **kw)
        if self.key_file is not None and token_refused(r):
            self.renew(kind)
            r = self.session.request(method, url, headers={**headers, **self.auth(kind)}, **kw)
        return r

    # --- inference --------------------------------------------------------------------------------------
    def ping(self, base: str | None = None) -> bool:
        try:
            r = self._call("inference", "GET", f"{(base or self.inference_url)}/ping", timeout=5)
            return r.status_code == 200 and "Healthy" in r.text
        except requests.RequestException:
            return False

    def predict(self, name: str, data: bytes, version: str | None = None, resolution: int | None = None,
                fmt: str | None = None, base: str | None = None, **kw) -> requests.Response:
        """POST raw image bytes; options as query parameters. ``base`` = another front door (the router)."""
        path = f"/predictions/{name}" + (f"/{version}" if version else "")
        # TorchServe 0.12 does not hand URL query parameters to the handler: options travel as headers
        h = {k: str(v) for k, v in (("X-Resolution", resolution), ("X-Format", fmt)) if v is not None}
        return self._call("inference", "POST", f"{base or self.inference_url}{path}", data=data,
                          headers={"Content-Type": "application/octet-stream", **h, **(kw.pop("headers", None) or {})},
                          **kw)

    # --- management -------------------------------------------------------------------------------------
    def mgmt(self, method: str, path: str, ok=(200,), **kw) -> Any:
        r = self._call("management", method, f"{self.management_url}{path}", **kw)
        if r.status_code not in ok:
            raise ServeError(f"{method} {path} → {r.status_code}: {r.text.strip()[:400]}")
        try:
            return r.json()
        except ValueError:
            return r.text

    def models(self) -> list[str]:
        out, token = [], None
        for _ in range(100):
            page = self.mgmt("GET", "/models", params={"limit": 100, **({"next_page_token": token} if token else {})})
            out += [m["modelName"] for m in page.get("models", [])]
            token = page.get("nextPageToken")
            if not token:
                break
        return out

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every registered version of ``name`` (describe output: modelVersion, workers, batchSize, ...)."""
        r = self._call("management", "GET", f"{self.management_url}/models/{name}/all")
        if r.status_code == 404:
            return []
        if r.status_code != 200:
            raise ServeError(f"GET /models/{name}/all → {r.status_code}: {r.text.strip()[:300]}")
        return r.json()

    def default_version(self, name: str) -> str | None:
        r = self._call("management", "GET", f"{self.management_url}/models/{name}")
        if r.status_code != 200:
            return None
        d = r.json()
        return str(d[0]["modelVersion"]) if d else None

    def register(self, mar_url: str, name: str | None = None, workers: int = 1, timeout_s: int = 300) -> Any:
        params = {"url": mar_url, "initial_workers": workers, "synchronous": "true"}
        if name:
            params["model_name"] = name
        return self.mgmt("POST", "/models", params=params, timeout=timeout_s)

    def unregister(self, name: str, version: str) -> Any:
        return self.mgmt("DELETE", f"/models/{name}/{version}", ok=(200, 404))

    def set_default(self, name: str, version: str) -> Any:
        return self.mgmt("PUT", f"/models/{name}/{version}/set-default")

    def metrics(self) -> str:
        if not self.metrics_url:
            return ""
        r = self._call("management", "GET", f"{self.metrics_url}/metrics", timeout=10)
        return r.text if r.status_code == 200 else ""


def token_refused(r: requests.Response) -> bool:
    """TorchServe 0.12 answers a missing / wrong / expired token with 400 InvalidKeyException (not 401)."""
    if r.status_code == 401:
        return True
    return r.status_code == 400 and "InvalidKeyException" in r.text[:300]


def ready_workers(describe: dict[str, Any]) -> int:
    return sum(1 for w in describe.get("workers", []) if str(w.get("status")).upper() == "READY")


def wait_version_ready(cl: Client, name: str, version: str, timeout_s: float = 30.0) -> bool:
    """Whether ``name`` v``version`` has a READY worker within ``timeout_s``. A synchronous registration can
    return while its worker is still reported LOADING (seen on a loaded machine), so one look is not enough."""
    deadline = time.monotonic() + timeout_s
    while True:
        desc = [d for d in cl.versions(name) if str(d["modelVersion"]) == version]
        if desc and ready_workers(desc[0]) > 0:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.25)


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text exposition → [(metric, labels, value)] (enough of the format for TorchServe)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            head, value = line.rsplit(" ", 1)
            if "{" in head:
                name, rest = head.split("{", 1)
                labels = {}
                for part in rest.rstrip("}").split(","):
                    if "=" in part:
                        k, v = part.split("=", 1)
                        labels[k.strip()] = v.strip().strip('"')
            else:
                name, labels = head, {}
            out.append((name.strip(), labels, float(value)))
        except ValueError:
            continue
    return out
