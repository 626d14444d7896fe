"""Helpers for the page tests: `faceparse ui page` as a real process, and Debian's Chromium driven by Playwright.

The browser is the system one (``/usr/bin/chromium``, Debian's package, installed by ``make test`` through
``scripts/install_browser.sh``); Playwright's own browser download is never used. Flags: no sandbox (root in
CI), no GPU, and no background networking / component updates / sync, so the browser makes no connection
of its own on a closed network; Playwright gives each launch a fresh profile directory.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

CHROMIUM = os.environ.get("FACEPARSE_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1360, "height": 900}


def launch(playwright):
    if not Path(CHROMIUM).is_file():
        raise RuntimeError(f"no browser at {CHROMIUM}: `make test` installs Debian's chromium "
                           "(scripts/install_browser.sh); or set FACEPARSE_CHROMIUM")
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)


class PageProcess:
    """`faceparse ui page ARGS --port PORT` in its own session, up when /-/healthz answers; ``stop()`` ends it."""

    def __init__(self, args: list[str], port: int, cwd: Path, timeout_s: float = 180.0, log_dir: Path | None = None):
        self.url = f"http://127.0.0.1:{port}"
        self.log = (log_dir or cwd) / f"ui-page-{port}.log"
        faceparse = Path(sys.executable).parent / "faceparse"
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([str(faceparse), "ui", "page", "--port", str(port), *args], cwd=cwd,
                                         stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"faceparse ui page exited ({self.proc.returncode}):\n{self.output()}")
            try:
                if requests.get(f"{self.url}/-/healthz", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"faceparse ui page did not answer within {timeout_s:.0f} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.is_file() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)   # its own session: the page server and nothing else
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def canvas_sum(page, selector: str) -> int:
    """A checksum of a canvas's pixels (to see an overlay change)."""
    return page.evaluate("""(sel) => {
        const c = document.querySelector(sel);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = 0; for (let i = 0; i < d.length; i++) s = (s + d[i] * (i % 251 + 1)) % 2147483647;
        return s; }""", selector)


def drop_file(page, selector: str, path: Path, mime: str) -> None:
    """Drop ``path`` on ``selector`` as a user would from a file manager (a DataTransfer holding one File)."""
    import base64

    page.evaluate("""([sel, b64, name, mime]) => {
        const bin = atob(b64); const bytes = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name, {type: mime}));
        const el = document.querySelector(sel);
        for (const type of ['dragenter', 'dragover', 'drop'])
            el.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
    }""", [selector, base64.b64encode(path.read_bytes()).decode(), path.name, mime])
