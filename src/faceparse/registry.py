"""The MLflow model registry: register a bundle, promote the challenger, roll back, resolve a model.

Aliases only (stages are deprecated): ``challenger`` = the latest registered version, ``champion`` = the
version serving uses (``models:/<registry.model_name>@champion``).

A version's artifacts are the bundle directory itself (``weights.pt`` + ``bundle.json``, loadable without
pickle), logged as a plain run artifact ``bundle-<sha12>`` (sha of weights.pt) of the training run (bundle
meta ``mlflow_run_id``) or of a new run; the model version's ``source`` is that artifact's URI. The test
metrics of ``evaluate`` are version tags (``mean_f1``, ``miou``, ``pixel_acc``, ...), which is what
``promote`` compares.

Promotion history lives in version tags: ``promotion.decision`` (promoted | rejected | already-champion),
``promotion.reason``, ``promotion.previous_champion`` (the version that was champion before this one was
promoted — what ``rollback`` restores), ``promotion.at``; a rolled-back version gets ``rollback.at`` /
``rollback.restored``.

The tracking URI comes only from ``faceparse.tracking.tracking_uri(params)``.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .config import ConfigError, load_params, section
from .defaults import fill_defaults
from .hashing import sha256_file
from .schema import Registry
from .stages import bundle_stage, get_stage
from .staging import staging_dir
from .tracking import get_or_create_experiment, sqlite_path, tracking_uri

# Imports inside functions here: this module is on the start-up path of the command line, the page or the
# router, so heavy libraries load on first use (tests/code/test_light_imports.py)

CHALLENGER, CHAMPION = "challenger", "champion"
REGISTERED_FILE = "metrics/registered.json"
MODEL_CACHE = Path("runs") / "models"      # registry downloads / converted checkpoints (git-ignored)
TAG_DECISION, TAG_REASON, TAG_PREVIOUS, TAG_AT = ("promotion.decision", "promotion.reason",
                                                  "promotion.previous_champion", "promotion.at")
METRIC_TAGS = ("mean_f1", "miou", "pixel_acc", "n_images", "split", "label_table", "resolution",
               "bundle_sha256", "dataset_sha256")
_URI_RE = re.compile(r"^models:/(?P<name>[^@/]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))/?$")


class RegistryError(ValueError):
    """A registry operation cannot be done (unknown model / alias / version, server unreachable, nothing to
    promote or roll back to); the message says what and where."""


# ------------------------------------------------------------------------------------------ tracking store
def redact(uri: str) -> str:
    """The URI without user:password (safe to print and to write into metrics files)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return uri


def check_reachable(uri: str, must_exist: bool = False, timeout: float = 5.0) -> None:
    """Fail fast, naming the URI, instead of MLflow's minutes of HTTP retries against a dead server.
    ``must_exist``: for reads, a sqlite store that does not exist is an error (instead of a new empty one)."""
    if uri.startswith(("http://", "https://")):
        import requests

        try:
            r = requests.get(uri.rstrip("/") + "/health", timeout=timeout)
        except requests.RequestException as e:
            raise RegistryError(f"cannot reach the MLflow tracking server at {redact(uri)}: "
                                f"{type(e).__name__}: {e}") from None
        if r.status_code >= 500:
            raise RegistryError(f"the MLflow tracking server at {redact(uri)} is unhealthy: /health answered "
                                f"{r.status_code}")
        return
    db = sqlite_path(uri)
    if db is not None:
        if must_exist and not db.is_file():
            raise RegistryError(f"no MLflow store at {uri} ({db.resolve()} does not exist): nothing has been "
                                "tracked or registered there yet")
        db.parent.mkdir(parents=True, exist_ok=True)


def _default_tracking_uri() -> str:
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]

    try:
        return tracking_uri(load_params())
    except ConfigError as e:
        raise RegistryError(f"no tracking URI: pass one, set MLFLOW_TRACKING_URI, or run where params.yaml is "
                            f"({e})") from None


def client_for(params: dict[str, Any] | None = None, uri: str | None = None, must_exist: bool = False):
    """(MlflowClient, tracking URI) for ``params`` (``faceparse.tracking.tracking_uri``) or an explicit URI;
    the registry lives in the same store."""
    if uri is None:
        if params is None:
            uri = _default_tracking_uri()
        else:
            uri = tracking_uri(params)
    uri = str(uri)
    check_reachable(uri, must_exist=must_exist)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri), uri


def _mlflow_error(e: Exception, uri: str, what: str) -> RegistryError:
    msg = getattr(e, "message", None) or str(e)
    return RegistryError(f"{what} failed on the MLflow store at {redact(uri)}: {msg.splitlines()[0] if msg else e}")


def _is_missing(e: Exception) -> bool:
    code = getattr(e, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(e).lower()


def _registry_section(params: dict[str, Any]) -> dict[str, Any]:
    reg = section(params, "registry")
    if not reg.get("model_name"):
        raise ConfigError("params: missing registry.model_name")
    return fill_defaults(Registry, reg)


# ------------------------------------------------------------------------------------------------ register


def _load_metrics(metrics_file: Path, explicit: bool, weights_sha: str, key: str = "mean_f1") -> dict[str, Any] | None:
    from .log import console

    if not metrics_file.is_file():
        if explicit:
            raise FileNotFoundError(f"metrics file not found: {metrics_file} (run `faceparse evaluate` first)")
        console.print(f"[yellow]warning:[/] no test metrics ({metrics_file} missing): the version is registered "
                      "without them and `promote` will refuse it")
        return None
    try:
        metrics = json.loads(metrics_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{metrics_file}: not valid JSON: {e}") from None
    if not isinstance(metrics, dict) or key not in metrics:
        raise ValueError(f"{metrics_file}: not an evaluation metrics file (no {key})")
    sha = metrics.get("bundle_sha256")
    if sha and sha != weights_sha:
        raise ValueError(f"{metrics_file} was computed for another model (weights sha256 {sha[:12]}…, this bundle "
                         f"{weights_sha[:12]}…): run `faceparse evaluate` on this bundle first")
    return metrics


def _tag(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return "" if v is None else str(v)


def register(params: dict[str, Any], bundle_dir: str | os.PathLike | None = None,
             metrics_file: str | os.PathLike | None = None) -> dict[str, Any]:
    """Log the bundle as an MLflow run artifact, create a new version of ``registry.model_name`` from it,
    point alias ``challenger`` at it, tag it with the test metrics; write ``metrics/registered.json``."""
    from .bundle import META, WEIGHTS, read_meta
    from .log import console

    reg = _registry_section(params)
    name = str(reg["model_name"])
    bdir = Path(bundle_dir if bundle_dir is not None else section(params, "train").get("bundle_dir", ""))
    meta = read_meta(bdir)
    stage = get_stage(bundle_stage(meta))
    if not (bdir / WEIGHTS).is_file():
        raise FileNotFoundError(f"not a model bundle (no {WEIGHTS}): {bdir.resolve()}")
    sha = sha256_file(bdir / WEIGHTS)
    explicit = metrics_file is not None
    mfile = Path(metrics_file if explicit else (params.get("evaluate") or {}).get("metrics_file", "metrics/eval.json"))
    metrics = _load_metrics(mfile, explicit, sha, stage.primary_metric)

    client, uri = client_for(params)
    from mlflow.exceptions import MlflowException

    try:
        run_id = meta.get("mlflow_run_id")
        created = False
        if run_id:
            try:
                client.get_run(run_id)
            except MlflowException:
                console.print(f"[yellow]warning:[/] the bundle's training run {run_id} is not in {redact(uri)}: "
                              "logging the bundle to a new run")
                run_id = None
        if not run_id:
            exp_id = get_or_create_experiment(params)
            run = client.create_run(exp_id, run_name=f"register-{name}",
                                    tags={"faceparse.step": "register", "faceparse.bundle_sha256": sha})
            run_id, created = run.info.run_id, True
        artifact_path = f"bundle-{sha[:12]}"
        client.log_artifact(run_id, str(bdir / WEIGHTS), artifact_path)
        client.log_artifact(run_id, str(bdir / META), artifact_path)
        if created and metrics:
            from mlflow.entities import Metric

            ts = int(time.time() * 1000)
            client.log_batch(run_id, metrics=[Metric(k, v, ts, 0) for k, v in stage.mlflow_metrics(metrics).items()])
        if created:
            client.set_terminated(run_id)
        source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"

        try:
            client.get_registered_model(name)
        except MlflowException as e:
            if not _is_missing(e):
                raise
            client.create_registered_model(name, tags={"task": stage.name, "primary_metric": stage.primary_metric,
                                                       "direction": stage.info.direction},
                                           description=f"{stage.info.summary}; artifacts = faceparse model bundle "
                                                       "(weights.pt + bundle.json)")
        tags = {"bundle_sha256": sha, "input_size": str(meta.get("input_size", "")), "stage": stage.name,
                "model_preset": str(meta.get("model_config", {}).get("preset", "")),
                "bundle_path": artifact_path, **({"label_table": meta["label_table"]} if "label_table" in meta else {})}
        if metrics:
            tags.update({k: _tag(metrics.get(k)) for k in (*METRIC_TAGS, stage.primary_metric, *stage.baseline_metrics)
                         if k in metrics})
        mv = client.create_model_version(name, source=source, run_id=run_id, tags=tags,
                                         description=f"bundle {bdir} (weights sha256 {sha[:12]}…)")
        client.set_registered_model_alias(name, CHALLENGER, mv.version)
    except MlflowException as e:
        raise _mlflow_error(e, uri, f"registering {bdir} as {name!r}") from None

    out = {"name": name, "version": str(mv.version), "alias": CHALLENGER, "run_id": run_id,
           "uri": f"models:/{name}/{mv.version}", "source": source, "tracking_uri": redact(uri),
           "stage": stage.name, stage.primary_metric: metrics.get(stage.primary_metric) if metrics else None,
           "bundle_sha256": sha}
    rfile = Path(reg.get("registered_file") or REGISTERED_FILE)
    rfile.parent.mkdir(parents=True, exist_ok=True)
    rfile.write_text(json.dumps(out, indent=2) + "\n")
    return out


# --------------------------------------------------------------------------------------- promote / rollback
def _version_by_alias(client, name: str, alias: str):
    """The ModelVersion an alias points at, or None."""
    rm = client.get_registered_model(name)
    version = (rm.aliases or {}).get(alias)
    return None if version is None else client.get_model_version(name, str(version))


def _float_tag(mv, key: str) -> float | None:
    try:
        return float(mv.tags[key])
    except (KeyError, TypeError, ValueError):
        return None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _registered_model(client, uri: str, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException as e:
        if _is_missing(e):
            raise RegistryError(f"registered model {name!r} not found in {redact(uri)} "
                                "(run `faceparse register` first)") from None
        raise _mlflow_error(e, uri, f"reading {name!r}") from None


def promote(params: dict[str, Any]) -> dict[str, Any]:
    """Move ``champion`` to the ``challenger`` version if its test primary metric (the params stage's: mean F1
    for the parser, higher is better; NME for landmarks, lower is better) beats the champion's by more than
    ``registry.promote_margin`` (the first model is promoted). The decision and its reason are version tags."""
    from mlflow.exceptions import MlflowException

    stage = get_stage(str(params.get("stage") or "parser"))
    key, label = stage.primary_metric, stage.info.metric_label
    beats, plus = (">", "+") if stage.info.direction == "max" else ("<", "-")

    reg = _registry_section(params)
    name = str(reg["model_name"])
    margin = float(reg["promote_margin"] or 0.0)   # null: none
    client, uri = client_for(params)
    _registered_model(client, uri, name)
    try:
        chal = _version_by_alias(client, name, CHALLENGER)
        if chal is None:
            raise RegistryError(f"registered model {name!r} has no {CHALLENGER!r} alias in {redact(uri)}: "
                                "run `faceparse register` first")
        champ = _version_by_alias(client, name, CHAMPION)
        c_f1 = _float_tag(chal, key)
        k_f1 = _float_tag(champ, key) if champ is not None else None
        promoted = False
        floor = stage.floor_problem({k: _float_tag(chal, k) for k in chal.tags}, reg)
        if champ is not None and champ.version == chal.version:
            decision, reason = "already-champion", f"challenger v{chal.version} is already the champion"
        elif c_f1 is None:
            decision, reason = "rejected", (f"challenger v{chal.version} has no test {label} (tag {key}): "
                                            "evaluate it and register again")
        elif floor:
            decision, reason = "rejected", f"challenger v{chal.version} {floor}"
        elif champ is None:
            promoted, decision = True, "promoted"
            reason = f"first model: no champion yet (challenger v{chal.version} test {label} {c_f1:.4f})"
        elif k_f1 is None:
            promoted, decision = True, "promoted"
            reason = (f"champion v{champ.version} has no recorded test {label}; challenger v{chal.version} has "
                      f"{c_f1:.4f}")
        elif stage.better(c_f1, k_f1, margin):
            promoted, decision = True, "promoted"
            reason = (f"challenger v{chal.version} test {label} {c_f1:.4f} {beats} champion v{champ.version} "
                      f"{k_f1:.4f} {plus} margin {margin:g}")
        else:
            decision = "rejected"
            reason = (f"challenger v{chal.version} test {label} {c_f1:.4f} does not beat champion "
                      f"v{champ.version} {k_f1:.4f} {plus} margin {margin:g}")
        if champ is not None and champ.version != chal.version:
            a, b = chal.tags.get("dataset_sha256"), champ.tags.get("dataset_sha256")
            if a and b and a != b:
                reason += " (note: the two were evaluated on different test data)"
        if decision != "already-champion":
            client.set_model_version_tag(name, chal.version, TAG_DECISION, decision)
            client.set_model_version_tag(name, chal.version, TAG_REASON, reason)
            client.set_model_version_tag(name, chal.version, TAG_AT, _now())
        if promoted:
            client.set_model_version_tag(name, chal.version, TAG_PREVIOUS,
                                         "" if champ is None else str(champ.version))
            client.set_registered_model_alias(name, CHAMPION, chal.version)
    except MlflowException as e:
        raise _mlflow_error(e, uri, f"promoting {name!r}") from None
    before = None if champ is None else str(champ.version)
    return {"name": name, "promoted": promoted, "decision": decision, "reason": reason,
            "challenger": str(chal.version), "champion_before": before,
            "champion_after": str(chal.version) if promoted else before,
            f"challenger_{key}": c_f1, f"champion_{key}": k_f1, "margin": margin}


def rollback(params: dict[str, Any]) -> dict[str, Any]:
    """Move ``champion`` back to the version that was champion before the current one was promoted (its
    ``promotion.previous_champion`` tag). The rolled-back version is tagged and loses ``challenger`` if it
    held it (so the next ``promote`` cannot re-promote it)."""
    from mlflow.exceptions import MlflowException

    reg = _registry_section(params)
    name = str(reg["model_name"])
    client, uri = client_for(params)
    _registered_model(client, uri, name)
    try:
        cur = _version_by_alias(client, name, CHAMPION)
        if cur is None:
            raise RegistryError(f"registered model {name!r} has no {CHAMPION!r} in {redact(uri)}: nothing to roll back")
        prev = (cur.tags or {}).get(TAG_PREVIOUS, "")
        if not prev:
            raise RegistryError(f"cannot roll back {name!r}: champion v{cur.version} was the first champion "
                                "(no previous champion recorded)")
        try:
            client.get_model_version(name, prev)
        except MlflowException as e:
            if _is_missing(e):
                raise RegistryError(f"cannot roll back {name!r}: the previous champion v{prev} no longer exists") from None
            raise
        client.set_registered_model_alias(name, CHAMPION, prev)
        client.set_model_version_tag(name, cur.version, "rollback.at", _now())
        client.set_model_version_tag(name, cur.version, "rollback.restored", prev)
        chal = _version_by_alias(client, name, CHALLENGER)
        if chal is not None and chal.version == cur.version:
            client.delete_registered_model_alias(name, CHALLENGER)
    except MlflowException as e:
        raise _mlflow_error(e, uri, f"rolling back {name!r}") from None
    return {"name": name, "champion_before": str(cur.version), "champion_after": str(prev),
            "reason": f"rolled back from v{cur.version} to the previous champion v{prev}"}


# ---------------------------------------------------------------------------------------------- resolving
def parse_model_uri(model: str) -> tuple[str, str | None, str | None]:
    """``models:/name@alias`` → (name, alias, None); ``models:/name/<version>`` → (name, None, version)."""
    m = _URI_RE.match(model)
    if not m:
        raise RegistryError(f"malformed model URI {model!r}: use models:/<name>@<alias> or models:/<name>/<version>")
    return m["name"], m["alias"], m["version"]


def _get_version(client, uri: str, model: str):
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_model_uri(model)
    rm = _registered_model(client, uri, name)
    aliases = dict(rm.aliases or {})
    try:
        if alias is not None:
            if alias not in aliases:
                known = ", ".join(f"@{a}→v{v}" for a, v in sorted(aliases.items())) or "none"
                raise RegistryError(f"registered model {name!r} has no alias {alias!r} in {redact(uri)} "
                                    f"(aliases: {known})")
            return client.get_model_version(name, str(aliases[alias]))
        if version == "latest":
            versions = client.search_model_versions(f"name='{name}'")
            if not versions:
                raise RegistryError(f"registered model {name!r} has no versions in {redact(uri)}")
            return max(versions, key=lambda v: int(v.version))
        if not version.isdigit():
            raise RegistryError(f"model version must be a number or 'latest', got {version!r} in {model!r}")
        try:
            return client.get_model_version(name, version)
        except MlflowException as e:
            if _is_missing(e):
                raise RegistryError(f"registered model {name!r} has no version {version} in {redact(uri)}") from None
            raise
    except MlflowException as e:
        raise _mlflow_error(e, uri, f"resolving {model}") from None


def _check_replaceable(dst: Path) -> None:
    """Only an empty folder or an existing bundle may be replaced by a download / conversion."""
    from .bundle import META

    if dst.exists() and (not dst.is_dir() or (any(dst.iterdir()) and not (dst / META).is_file())):
        raise FileExistsError(f"{dst} exists and is not a model bundle: refusing to overwrite it (choose another dst)")


def _download(source: str, dst: Path, uri: str) -> Path:
    """Download a bundle directory artifact into ``dst`` (atomically: temp dir, then rename)."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from .bundle import META

    _check_replaceable(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(dst)
    try:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp),
                                                             tracking_uri=uri))
        except MlflowException as e:
            raise _mlflow_error(e, uri, f"downloading {source}") from None
        if not (local / META).is_file():
            raise RegistryError(f"{source} is not a faceparse model bundle (no {META})")
        (local / ".source").write_text(source + "\n")
        if dst.exists():
            shutil.rmtree(dst)
        local.rename(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _download_once(source: str, dst: Path, uri: str, fresh) -> Path:
    """``_download`` unless ``fresh()``, under a lock file beside ``dst``: processes resolving one model at once
    (make run's demos, a server packaging while `predict` runs) download it once, and none deletes the copy
    another is reading."""
    from filelock import FileLock

    if fresh():
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dst.parent / f".{dst.name}.lock")):
        if not fresh():
            _download(source, dst, uri)
    return dst


def _checkpoint_to_bundle(ckpt: Path, dst: Path | None) -> Path:
    """A training checkpoint (``torch.save`` of a dict holding the model state dict under "model" and the
    bundle meta under "meta"; tensors and plain types only) → a bundle directory."""
    import torch

    from .bundle import save_bundle

    try:
        obj = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt / pickled-object checkpoints
        raise ValueError(f"cannot read checkpoint {ckpt}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    state = meta = None
    if isinstance(obj, dict):
        state = next((obj[k] for k in ("model", "model_state", "state_dict") if isinstance(obj.get(k), dict)), None)
        meta = next((obj[k] for k in ("meta", "bundle_meta") if isinstance(obj.get(k), dict)), None)
    if state is None or meta is None or "model_config" not in meta:
        raise ValueError(f"{ckpt} is not a faceparse training checkpoint: expected a dict with the model state dict "
                         "under 'model' and the bundle meta (model_config, stage, ...) under 'meta'")
    out = dst or (MODEL_CACHE / "checkpoints" / hashlib.sha256(str(ckpt.resolve()).encode()).hexdigest()[:12])
    _check_replaceable(Path(out))
    model = get_stage(bundle_stage(meta)).build_model(meta)
    model.load_state_dict(state)
    save_bundle(out, model, {**meta, "source_checkpoint": str(ckpt.resolve())})
    return Path(out)


def resolve_bundle(model: str | os.PathLike, dst: str | os.PathLike | None = None,
                   tracking_uri: str | None = None) -> tuple[Path, dict[str, Any]]:
    """A local bundle directory for ``model`` and what it is.

    ``model``: ``models:/name@alias`` or ``models:/name/<version>`` (``latest`` too): downloaded from the
    registry into ``dst`` or the cache ``runs/models/<name>/<version>`` (reused while the version's source is
    unchanged); ``runs:/<run_id>/<path>``: downloaded likewise; a bundle directory: used as is; a training
    checkpoint ``.pt`` (``{"model": state_dict, "meta": bundle meta, ...}``): converted to a bundle.
    info = {name, version, aliases, source, run_id, uri}."""
    from .bundle import META

    ref = str(model)
    if ref.startswith(("models:/", "runs:/")):
        uri = str(tracking_uri) if tracking_uri else _default_tracking_uri()
        client, uri = client_for(uri=uri, must_exist=True)
        if ref.startswith("runs:/"):
            out = Path(dst) if dst else MODEL_CACHE / "runs" / hashlib.sha256(ref.encode()).hexdigest()[:12]
            _download_once(ref, out, uri, lambda: (out / META).is_file())
            return out, {"name": None, "version": None, "aliases": [], "source": ref, "run_id": ref.split("/")[1],
                         "uri": ref}
        mv = _get_version(client, uri, ref)
        out = Path(dst) if dst else MODEL_CACHE / mv.name / str(mv.version)
        marker = out / ".source"
        _download_once(mv.source, out, uri,
                       lambda: (out / META).is_file() and marker.is_file() and marker.read_text().strip() == mv.source)
        return out, {"name": mv.name, "version": str(mv.version), "aliases": list(mv.aliases or []),
                     "source": mv.source, "run_id": mv.run_id, "uri": f"models:/{mv.name}/{mv.version}",
                     "tags": dict(mv.tags or {})}
    p = Path(ref)
    if p.is_dir():
        if not (p / META).is_file():
            raise FileNotFoundError(f"not a model bundle (no {META}): {p.resolve()}")
        return p, {"name": p.resolve().name, "version": None, "aliases": [], "source": str(p.resolve()),
                   "run_id": None, "uri": str(p)}
    if p.is_file():
        if p.suffix not in (".pt", ".pth", ".ckpt"):
            raise ValueError(f"{p}: a model is a bundle directory, a checkpoint .pt or a models:/ URI")
        out = _checkpoint_to_bundle(p, Path(dst) if dst else None)
        return out, {"name": p.stem, "version": None, "aliases": [], "source": str(p.resolve()), "run_id": None,
                     "uri": str(p)}
    raise FileNotFoundError(f"model not found: {ref!r} is neither a registry URI (models:/<name>@<alias>, "
                            "models:/<name>/<version>), a bundle directory nor a checkpoint .pt")
