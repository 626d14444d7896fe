"""prepare: params ``data.*`` → the canonical dataset (synthesised, or ingested from a raw archive on S3)."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Output

from .base import COMPONENT


@dsl.component(**COMPONENT)
def prepare(params_yaml: str, overrides: List[str], dataset: Output[Dataset], raw_uri: str = "",
            raw_sha256: str = ""):
    """faceparse.data.prepare.prepare(params) with data.dir = the Dataset artifact.

    raw_uri: an s3:// archive (.tar/.tar.gz/.zip) of a real layout (data.source = celebamask-hq | lapa |
    helen | labelmaps): fetched with faceparse.data.storage.fetch (checksum-verified), unpacked, used as
    data.raw_dir. Empty: data.raw_dir from params (or the synthesiser when data.source = synth)."""
    import shutil
    import tempfile
    from pathlib import Path

    from faceparse.config import set_key
    from faceparse.data.manifest import read_info
    from faceparse.data.prepare import prepare as prepare_step
    from faceparse.launch.params import component_params

    params = component_params(params_yaml, overrides, {"data.dir": dataset.path})
    if raw_uri:
        if params["data"].get("source") == "synth":
            raise ValueError(f"raw_uri={raw_uri} was given but data.source is 'synth': set data.source to the "
                             "archive's layout (celebamask-hq | lapa | helen | labelmaps)")
        from faceparse.data.storage import fetch

        tmp = Path(tempfile.mkdtemp(prefix="faceparse-raw-"))
        archive = fetch(raw_uri, tmp / "download", sha256=raw_sha256 or None)
        raw = tmp / "raw"
        shutil.unpack_archive(str(archive), str(raw))
        entries = [p for p in raw.iterdir() if not p.name.startswith(".")]
        set_key(params, "data.raw_dir", str(entries[0] if len(entries) == 1 and entries[0].is_dir() else raw))
    out = prepare_step(params, progress=False)
    info = read_info(out)
    dataset.metadata.update({k: info[k] for k in ("label_table", "size", "source", "count") if k in info})
