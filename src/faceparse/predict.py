"""Batch prediction from the command line: images → label maps, overlays and per-class masks.

``model`` is anything ``faceparse.registry.resolve_bundle`` accepts (``models:/name@alias``,
``models:/name/<version>``, a bundle directory, a training checkpoint ``.pt``).

Photos (``detect=True``, the default for parser bundles; ``faceparse.photos``): the faces are detected,
each is cropped square and upright the way the training faces were framed, parsed, and its label map
warped back onto the photo; pixels outside every face are background. The map has the photo's aspect
ratio, its long side ``resolution`` (default: the photo's own). A photo with no face is reported (the file
named, ``"no_face": true``) and nothing is written for it. A square photo of one face already framed that
way (a CelebAMask-HQ image) is parsed whole, exactly as with ``detect=False``: resized to the bundle's
``input_size`` (bicubic, ``faceparse.models.preprocess``) and decoded at ``resolution`` × ``resolution``
(any size: the LIIF property; default the bundle's input size).

Per input ``<stem>``, in ``out_dir``:
* ``<stem>_label.png``: palette PNG (mode P) of class ids, palette = the bundle's label table colours;
* ``<stem>_overlay.png``: the label colours blended over the input resized to the output size;
* ``<stem>_masks/<class>.png`` (``masks=True``): one 0/255 mask per class of the table.

An unreadable image is reported (the file named) and skipped; the others are still written. Stems shared
by several inputs get a ``-2``, ``-3``… suffix so no output overwrites another.
"""
from __future__ import annotations

import glob as _glob
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .api import shipped_ref
from .bundle import load_bundle
from .evaluate import int8_device
from .images import ImageError, read_image
from .log import console, progress_bar
from .registry import resolve_bundle
from .runtime import tick
from .stages import bundle_stage, get_stage
from .tracking import tracking_uri

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_GLOB_CHARS = set("*?[")


def expand_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """An image path, a folder (its image files, sorted, not recursive) or a glob — or a list of these —
    → the image paths, in order, without duplicates."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out: list[Path] = []
    for item in inputs:
        s = str(item)
        p = Path(s).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
        elif p.is_file():
            found = [p]
        elif _GLOB_CHARS & set(s):
            found = sorted(Path(f) for f in _glob.glob(os.path.expanduser(s), recursive=True) if Path(f).is_file())
        else:
            raise FileNotFoundError(f"input not found: {s} (give image files, folders or glob patterns)")
        out.extend(found)
    seen, unique = set(), []
    for f in out:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _stems(paths: Sequence[Path]) -> list[str]:
    used: dict[str, int] = {}
    out = []
    for p in paths:
        stem = p.stem
        n = used.get(stem, 0) + 1
        used[stem] = n
        out.append(stem if n == 1 else f"{stem}-{n}")
    return out


def _read(path: Path):
    """(RGB PIL image, None) or (None, error message naming the file), through the one reader."""
    try:
        return read_image(path), None
    except (ImageError, OSError) as e:
        return None, f"cannot read image: {e}"


def each_photo(paths: Sequence[Path], what: str, progress: bool, handle) -> list[dict[str, Any]]:
    """``handle(path, stem, image) -> result`` for every photo that reads, with a bar; an unreadable one is
    named on the console and gets {"input", "ok": False, "error"}; results in input order."""
    results = []
    with progress_bar(f"{what} {len(paths)} images", len(paths), enabled=progress) as advance:
        for path, stem in zip(paths, _stems(paths)):
            img, err = _read(path)
            if err:
                console.print(f"[bold red]error:[/] {err}")
                results.append({"input": str(path), "ok": False, "error": err})
            else:
                results.append(handle(path, stem, img))
            advance()
            tick()
    return results


def predict(model: str | os.PathLike | None, inputs, out_dir: str | os.PathLike, resolution: int | None = None,
            masks: bool = False, batch_size: int = 4, params: dict[str, Any] | None = None,
            progress: bool = True, device: str | None = None, detect: bool = True,
            precision: str | None = None, stage: str | None = None) -> list[dict[str, Any]]:
    """Predict every input; returns one dict per input: {"input", "ok", "label", "overlay", "masks",
    "classes", "resolution", "size", "faces", "aligned"} or {"input", "ok": False, "error"} (``"no_face":
    True`` when detection found none). ``model`` None: ``stage``'s model shipped in the package (default the
    parser's; ``faceparse.api.shipped_ref``). Raises ValueError when there is no input image at all; an unreadable
    image is an entry with ok=False (the caller decides the exit code). ``detect``: parser bundles only.
    ``precision``: fp32 | int8 (default: the bundle's; int8 runs on the CPU, faceparse.models.int8)."""
    paths = expand_inputs(inputs)
    if not paths:
        given = [str(inputs)] if isinstance(inputs, (str, os.PathLike)) else [str(i) for i in inputs]
        raise ValueError(f"no input images found in {', '.join(given) or '(nothing given)'} "
                         f"(image extensions: {' '.join(IMAGE_EXTS)})")
    bs = int(batch_size)
    if bs < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    model = shipped_ref(model, stage)
    uri = None
    if str(model).startswith(("models:/", "runs:/")):
        uri = tracking_uri(params)
    bdir, info = resolve_bundle(model, tracking_uri=uri)
    net, meta = load_bundle(bdir, precision=precision)
    st = get_stage(bundle_stage(meta))
    if st.info.verb:
        raise ValueError(f"{model} is a {st.name} bundle: use `faceparse {st.info.verb} --model {model} IMAGES --out DIR`")
    net.to(int8_device(meta, device))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run, write, what = st.predict_steps(net, meta, out, resolution=resolution, masks=masks, detect=detect)
    stems = _stems(paths)
    results: list[dict[str, Any]] = []
    prog = Progress(TextColumn("[bold]predict[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, disable=not progress or len(paths) < 2)
    with prog, torch.inference_mode():
        task = prog.add_task(f"{len(paths)} images → {what}", total=len(paths))
        for i in range(0, len(paths), bs):
            chunk = list(zip(paths[i:i + bs], stems[i:i + bs]))
            ok = []
            for path, stem in chunk:
                img, err = _read(path)
                if err:
                    console.print(f"[bold red]error:[/] {err}")
                    results.append({"input": str(path), "ok": False, "error": err})
                else:
                    ok.append((path, stem, img))
            if ok:
                for (path, stem, img), pred in zip(ok, run([img for _, _, img in ok], [str(p) for p, _, _ in ok])):
                    if isinstance(pred, Exception):   # no face in this photo: named, nothing written
                        console.print(f"[bold red]error:[/] {pred}")
                        results.append({"input": str(path), "ok": False, "error": str(pred), "no_face": True})
                    else:
                        results.append(write(path, stem, img, pred))
            prog.update(task, advance=len(chunk))
            tick()
    order = {str(p): k for k, p in enumerate(paths)}
    results.sort(key=lambda r: order[r["input"]])
    for r in results:
        r.setdefault("model", info.get("uri"))
        r.setdefault("precision", meta.get("precision", "fp32"))
    return results
