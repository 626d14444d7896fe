"""The README's picture of the web page (docs/img/ui.png), made from a real photo with every card filled.

    python scripts/ui_screenshot.py [--photo ../shared/fixtures/celebamask-hq-samples/0.jpg] [--out docs/img/ui.png]

Starts `faceparse ui page --in-process` on the models shipped with faceparse (nothing trained, nothing
registered), puts a blue bar over the photo's mouth (faceparse.occluders, placed from its label map ``<stem>.png``
so the completion and de-occlusion cards have something to do), uploads it in Debian's Chromium, waits for
every card and saves a full-page screenshot. Fails when a card does not answer. Needs the browser `make test`
installs (scripts/install_browser.sh).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from ui_browser import VIEWPORT, PageProcess, launch  # noqa: E402

from faceparse.occluders import occlude, read_face  # noqa: E402
from faceparse.serve.testing import free_ports  # noqa: E402

FIXTURE = REPO.parent / "shared" / "fixtures" / "celebamask-hq-samples" / "0.jpg"
CARDS = ("parser", "landmarks", "completion", "fisn", "recon3d")


def occluded_photo(photo: Path, out: Path) -> Path:
    """The photo (at its label map's size) with a blue bar over the mouth, as a JPEG under ``out``."""
    face = read_face(photo, photo.with_suffix(".png"))
    img, _ = occlude(face, face, "mouth_bar")
    path = out / f"{photo.stem}_mouth_bar.jpg"
    Image.fromarray(img).save(path, quality=92)
    return path


def shoot(photo: Path, out: Path, workdir: Path, browser=None) -> Path:
    """Screenshot of the page with every card answering ``photo`` → ``out`` (``browser``: a Playwright browser
    already launched, else one is launched here); AssertionError naming a card that did not answer."""
    from playwright.sync_api import sync_playwright

    page = PageProcess(["--in-process"], free_ports(1)[0], workdir, log_dir=workdir)
    try:
        if browser is not None:
            return _shot(browser, page, photo, out)
        with sync_playwright() as pw:
            own = launch(pw)
            try:
                return _shot(own, page, photo, out)
            finally:
                own.close()
    finally:
        page.stop()


def _shot(browser, page: PageProcess, photo: Path, out: Path) -> Path:
    ctx = browser.new_context(viewport=VIEWPORT)
    try:
        pg = ctx.new_page()
        pg.goto(page.url)
        pg.wait_for_selector("body[data-state=idle]", timeout=60_000)
        pg.set_input_files("#file", str(photo))
        pg.wait_for_selector("body[data-state=ready], body[data-state=error]", timeout=300_000)
        status = {c: pg.get_attribute(f"#stage-{c}", "data-status") for c in CARDS}
        bad = {c: s for c, s in status.items() if s != "ok"}
        assert not bad, f"cards that did not answer: {bad}\n{page.output()}"
        out.parent.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(out), full_page=True)
        return out
    finally:
        ctx.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photo", type=Path, default=FIXTURE, help="a photo with its label map <stem>.png beside it")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img" / "ui.png")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        shot = shoot(occluded_photo(args.photo, Path(tmp)), args.out, Path(tmp))
    print(f"wrote {shot} ({Image.open(shot).size[0]} × {Image.open(shot).size[1]} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
