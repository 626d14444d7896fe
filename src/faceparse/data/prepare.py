"""The DVC ``prepare`` stage: params ``data.*`` → the canonical dataset at ``data.dir``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import ConfigError, require, section
from ..defaults import fill_defaults
from ..schema import Ingest, Synth
from .ingest import FORMATS, ingest
from .manifest import read_info
from .synth import write_dataset

# Imports inside functions here: this module is on the start-up path of the command line, the page or the
# router, so heavy libraries load on first use (tests/code/test_light_imports.py)

# the class table each real layout produces (labelmaps: data.ingest.labelmaps_table)
FORMAT_TABLES = {"celebamask-hq": "celebamask-hq", "lapa": "lapa", "helen": "helen", "300w": "celebamask-hq"}


def synthesize(out: Path, size: int, opts: dict[str, Any], progress: bool = True) -> Path:
    """The synthetic dataset of ``data.synth`` options ``opts`` (``n``, ``seed``, ``occlusion_prob``, …) at
    ``out``, plus ``renders3d`` rendered 3D faces in its training split: the one path for ``data prepare``
    and ``data synth``. Options left out: their defaults (faceparse.schema.Synth)."""
    opts = fill_defaults(Synth, opts)
    renders = int(opts.pop("renders3d") or 0)
    path = Path(write_dataset(out, size=size, progress=progress, **opts))
    if renders > 0:
        from .synth3d import add_renders3d  # imports torch: only when 3D renders are asked for

        add_renders3d(path, renders, seed=int(opts["seed"]), occlusion_prob=float(opts["occlusion_prob"]),
                      progress=progress)
    return path


def prepare(params: dict[str, Any], progress: bool = True) -> Path:
    """``data.source == "synth"`` → ``synth.write_dataset(data.dir, **data.synth)``, plus
    ``data.synth.renders3d`` rendered 3D faces in its training split (``synth3d.add_renders3d``); otherwise
    ``ingest(data.source, data.raw_dir, data.dir, ...)``. Returns data.dir."""
    data = section(params, "data")
    source = require(data, "source", "data")
    out = Path(require(data, "dir", "data"))
    size = int(require(data, "size", "data"))
    table = data.get("label_table")

    if source == "synth":
        opts = dict(data.get("synth") or {})
        if "n" not in opts:
            raise ConfigError("params: missing data.synth.n")
        path = synthesize(out, size, opts, progress)
    elif source in FORMATS:
        ing = fill_defaults(Ingest, data.get("ingest"))
        expected = ing["labelmaps_table"] if source == "labelmaps" else FORMAT_TABLES[source]
        if table is not None and table != expected:
            raise ConfigError(f"params: data.label_table={table!r}, but data.source={source!r} produces "
                              f"{expected!r} labels; set data.label_table={expected}")

        raw = Path(require(data, "raw_dir", "data"))
        if not raw.is_dir():
            raise FileNotFoundError(f"data.raw_dir {raw} does not exist: put the {source} layout there "
                                    "(or `faceparse data fetch` it) before `faceparse data prepare`")
        path = ingest(source, raw, out, size=size, labelmaps_table=ing["labelmaps_table"],
                      split_seed=int(ing["split_seed"]), splits=ing.get("splits"), progress=progress)
    else:
        raise ConfigError(f"params: data.source={source!r} is not one of {['synth', *FORMATS]}")

    info = read_info(path)
    if table is not None and info.get("label_table") != table:
        raise ConfigError(f"params: data.label_table={table!r}, but the prepared dataset {path} uses "
                          f"{info.get('label_table')!r}; set data.label_table={info.get('label_table')}")
    return path
