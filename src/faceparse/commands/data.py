"""`faceparse data ...`: prepare, synth, ingest, validate, fetch, upload."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..defaults import fill_defaults
from ..schema import Ingest, Validate
from .common import ParamsOpt, SetOpt, console, emit_json, friendly_errors, params_from, params_or_empty

# Imports inside functions here: the command line starts without torch / mlflow (tests/code/test_light_imports.py)

data_app = typer.Typer(
    name="data",
    help="Datasets: build the canonical dataset (prepare / synth / ingest), gate it (validate), move files "
         "through S3 (fetch / upload). Layout: docs/CONTRACTS.md.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")



def _counts(path: Path) -> str:
    from ..data.manifest import SPLITS, read_info, read_manifest

    info = read_info(path)
    split = read_manifest(path)["split"]
    per = ", ".join(f"{s} {int((split == s).sum())}" for s in SPLITS)
    return f"{len(split)} samples ({per}), {info.get('label_table')} labels, {info.get('size')}²"


@data_app.command("prepare")
@friendly_errors
def prepare_cmd(params: Optional[Path] = ParamsOpt, set_: Optional[List[str]] = SetOpt,
                test_occlusion_prob: Optional[float] = typer.Option(
                    None, "--test-occlusion-prob", help="synth: occluder probability of a test-split face, its "
                    "occluded faces cycling through every occluder kind (default: data.synth.test_occlusion_prob)"),
                quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar")):
    """Build the canonical dataset at data.dir from params (the DVC `prepare` stage).

    data.source=synth runs the synthesiser (data.synth.*); any other source (celebamask-hq, lapa, helen,
    labelmaps) ingests data.raw_dir in that layout (data.ingest.*)."""
    from ..data.prepare import prepare

    sets = list(set_ or [])
    if test_occlusion_prob is not None:     # the same as --set data.synth.test_occlusion_prob=P
        sets.append(f"data.synth.test_occlusion_prob={test_occlusion_prob}")
    path = prepare(params_from(params, sets), progress=not quiet)
    console.print(f"[green]prepared[/] {path}: {_counts(path)}", soft_wrap=True)


@data_app.command("synth")
@friendly_errors
def synth_cmd(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output dataset folder (default: data.dir)"),
    n: Optional[int] = typer.Option(None, "--n", help="number of samples (default: data.synth.n)"),
    size: Optional[int] = typer.Option(None, "--size", help="image size in pixels (default: data.size)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="random seed (default: data.synth.seed)"),
    occlusion_prob: Optional[float] = typer.Option(None, "--occlusion-prob",
                                                   help="probability of an occluder per face (default: data.synth.occlusion_prob)"),
    test_occlusion_prob: Optional[float] = typer.Option(
        None, "--test-occlusion-prob", help="occluder probability of a test-split face, its occluded faces cycling "
        "through every occluder kind (default: data.synth.test_occlusion_prob)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    params: Optional[Path] = ParamsOpt,
    set_: Optional[List[str]] = SetOpt,
):
    """Write a synthetic face-parsing dataset (CelebAMask-HQ classes) in the canonical layout.

    Options left out come from params.yaml (data.dir, data.size, data.synth.*, renders3d included)."""
    from ..data.prepare import synthesize

    p = params_or_empty(params, set_)
    d = p.get("data", {}) or {}
    syn = dict(d.get("synth", {}) or {})
    out = out or (Path(d["dir"]) if "dir" in d else None)
    n = n if n is not None else syn.pop("n", None)
    syn.pop("n", None)
    if out is None or n is None:
        raise ValueError("give --out and --n (no params.yaml with data.dir / data.synth.n found)")
    if seed is not None:
        syn["seed"] = seed
    if occlusion_prob is not None:
        syn["occlusion_prob"] = occlusion_prob
    if test_occlusion_prob is not None:
        syn["test_occlusion_prob"] = test_occlusion_prob
    size = size if size is not None else int(d.get("size", 256))
    path = synthesize(Path(out), size, {**syn, "n": n}, progress=not quiet)
    console.print(f"[green]wrote[/] {path}: {_counts(path)}", soft_wrap=True)


@data_app.command("synth3d")
@friendly_errors
def synth3d_cmd(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output dataset folder (default: recon3d.data.dir)"),
    n: Optional[int] = typer.Option(None, "--n", help="number of faces (default: recon3d.data.synth3d.n)"),
    size: Optional[int] = typer.Option(None, "--size", help="image size in pixels (default: recon3d.data.size)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    params: Optional[Path] = ParamsOpt,
    set_: Optional[List[str]] = SetOpt,
):
    """Render the 3D face model over synthetic backgrounds, with and without occluders: the 3D reconstruction
    stage's data, with its true coefficients (faceparse.data.synth3d; settings: recon3d.data.*)."""
    from ..data.synth3d import synth3d_from_params

    path = synth3d_from_params(params_from(params, set_, "recon3d"), out, n, size, progress=not quiet)
    console.print(f"[green]wrote[/] {path}: {_counts(path)}", soft_wrap=True)


@data_app.command("ingest")
@friendly_errors
def ingest_cmd(
    fmt: str = typer.Option(..., "--format", "-f", help="source layout: celebamask-hq | lapa | helen | labelmaps"),
    src: Path = typer.Option(..., "--src", help="folder holding the source layout (only read)"),
    out: Path = typer.Option(..., "--out", "-o", help="canonical dataset folder to write (replaced atomically)"),
    size: Optional[int] = typer.Option(None, "--size", help="output size in pixels (default: data.size or 256)"),
    label_table: Optional[str] = typer.Option(None, "--label-table",
                                              help="class table of a labelmaps folder (default: data.ingest.labelmaps_table)"),
    split_seed: Optional[int] = typer.Option(None, "--split-seed",
                                             help="seed for layouts without official splits (default: data.ingest.split_seed)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    params: Optional[Path] = ParamsOpt,
    set_: Optional[List[str]] = SetOpt,
):
    """Convert a real dataset layout into the canonical dataset.

    Formats: celebamask-hq (CelebA-HQ-img/ + CelebAMask-HQ-mask-anno/), lapa ({train,val,test}/images,
    labels, landmarks), helen (train|test/<name>_image.jpg + _label.png), labelmaps (images beside
    same-stem label PNGs). Resizes once (bicubic images, nearest labels); writes atomically; never
    touches the source. Missing label files are skipped with a warning and listed in dataset.json."""
    from ..data.ingest import ingest

    d = params_or_empty(params, set_).get("data", {}) or {}
    ing = fill_defaults(Ingest, d.get("ingest"))   # with no params file: the defaults alone
    path = ingest(fmt, src, out, size=size if size is not None else int(d.get("size", 256)),
                  labelmaps_table=label_table or ing["labelmaps_table"],
                  split_seed=split_seed if split_seed is not None else int(ing["split_seed"]),
                  splits=ing.get("splits"), progress=not quiet)
    console.print(f"[green]ingested[/] {path}: {_counts(path)}", soft_wrap=True)


@data_app.command("validate")
@friendly_errors
def validate_cmd(
    dataset: Path = typer.Argument(..., help="canonical dataset folder (dataset.json + manifest.parquet)"),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", "-o",
                                           help="where summary.json, quarantine.json, metrics.json and data_docs/ go "
                                                "(default: validate.out_dir, else DATASET/../validation)"),
    min_classes: Optional[int] = typer.Option(None, help="least distinct classes per label map (default: validate.min_classes)"),
    max_background_fraction: Optional[float] = typer.Option(None, help="most background per map (default: validate.*)"),
    min_face_fraction: Optional[float] = typer.Option(None, help="least non-background per map (default: validate.*)"),
    allow_quarantine: bool = typer.Option(False, "--allow-quarantine",
                                          help="exit 0 when only individual samples are bad (they stay quarantined) "
                                               "and every dataset-level check passes"),
    json_out: bool = typer.Option(False, "--json", help="print summary.json to stdout"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
    params: Optional[Path] = ParamsOpt,
    set_: Optional[List[str]] = SetOpt,
):
    """Validate a dataset: per-file checks, great-expectations (Data Docs), split checks.

    Bad samples are listed in quarantine.json (never modified; load_split skips them). Exit 0 on pass,
    1 on failure with every bad file named on stderr, 2 on unusable input."""
    from ..data.validate import validate_dataset

    v = fill_defaults(Validate, params_or_empty(params, set_).get("validate"))   # no params file: the defaults
    out = out_dir or Path(v.get("out_dir") or (dataset.parent / "validation"))
    summary = validate_dataset(
        dataset, out,
        min_classes=min_classes if min_classes is not None else int(v["min_classes"]),
        max_background_fraction=(max_background_fraction if max_background_fraction is not None
                                 else float(v["max_background_fraction"])),
        min_face_fraction=min_face_fraction if min_face_fraction is not None else float(v["min_face_fraction"]),
        progress=not quiet,
    )
    if json_out:
        emit_json(summary)
    ps = ", ".join(f"{k} {c['usable']}/{c['samples']}" for k, c in summary["per_split"].items())
    if summary["success"]:
        console.print(f"[green]validation passed[/]: {summary['n_samples']} samples ({ps}); "
                      f"Data Docs: {summary['data_docs']}", soft_wrap=True)
        return
    for sid, reasons in summary["bad"].items():
        for r in reasons:
            console.print(f"[red]bad[/] {sid}: {r}", highlight=False, soft_wrap=True)
    for prob in summary["problems"]:
        console.print(f"[red]dataset[/]: {prob}", highlight=False, soft_wrap=True)
    failed = [f"{e['name']}({e.get('column') or ''})" for e in summary["expectations"] if not e["success"]]
    console.print(f"[bold red]validation failed[/]: {summary['n_bad']} of {summary['n_samples']} samples bad "
                  f"({ps} usable); failed: {', '.join(failed)}; quarantine: {out / 'quarantine.json'}; "
                  f"Data Docs: {summary['data_docs']}", highlight=False, soft_wrap=True)
    dataset_ok = all(e["success"] for e in summary["expectations"] if e.get("kind") == "dataset")
    if allow_quarantine and dataset_ok:
        console.print("[yellow]--allow-quarantine[/]: continuing without the quarantined samples")
        return
    raise typer.Exit(1)


@data_app.command("fetch")
@friendly_errors
def fetch_cmd(
    uri: str = typer.Argument(..., help="s3://bucket/key of one object"),
    dest_dir: Path = typer.Argument(..., help="folder to download into (the file keeps the key's basename)"),
    sha256: Optional[str] = typer.Option(None, "--sha256", help="expected sha256 (default: the object's sha256 metadata, if any)"),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url",
                                               help="S3 endpoint (default: $FACEPARSE_S3_ENDPOINT, $AWS_ENDPOINT_URL, AWS)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
):
    """Download one S3 object (resumable, checksum-verified).

    Bytes go to NAME.part (an interrupted download resumes with a Range request), the sha256 is checked,
    then the file is renamed into place. Credentials come from the environment (AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY); path-style addressing."""
    from ..data.storage import StorageError, fetch

    try:
        path = fetch(uri, dest_dir, sha256=sha256, endpoint_url=endpoint_url, progress=not quiet)
    except StorageError as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"[green]fetched[/] {uri} → {path}", highlight=False)
    typer.echo(str(path))


@data_app.command("upload")
@friendly_errors
def upload_cmd(
    path: Path = typer.Argument(..., help="file to upload"),
    uri: str = typer.Argument(..., help="destination s3://bucket/key"),
    endpoint_url: Optional[str] = typer.Option(None, "--endpoint-url",
                                               help="S3 endpoint (default: $FACEPARSE_S3_ENDPOINT, $AWS_ENDPOINT_URL, AWS)"),
    create_bucket: bool = typer.Option(False, "--create-bucket", help="create the bucket if it does not exist"),
):
    """Upload one file to S3.

    The file's sha256 goes into the object metadata; fetch verifies it."""
    from ..data.storage import StorageError, upload

    try:
        upload(path, uri, endpoint_url=endpoint_url, create_bucket=create_bucket)
    except StorageError as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(1) from None
    console.print(f"[green]uploaded[/] {path} → {uri}", highlight=False)
