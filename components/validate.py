"""validate: the validation gate. Always produces the Data Docs (HTML artifact) and the report; the
pipeline branches on ``passed`` (train runs only when it is true; otherwise ``validation_failed`` ends
the run as failed). Raising here instead would lose the Data Docs on a cluster: KFP uploads a task's
output artifacts only when the task succeeds."""

from typing import List, NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Output

from .base import COMPONENT


@dsl.component(**COMPONENT)
def validate(params_yaml: str, overrides: List[str], dataset: Input[Dataset], data_docs: Output[HTML],
             report: Output[Artifact], allow_quarantine: bool = False
             ) -> NamedTuple("ValidateOutputs", [("passed", bool), ("summary", str)]):
    """faceparse.data.validate.validate_dataset(dataset, report, **params.validate).

    report: summary.json, quarantine.json, metrics.json, data_docs/ (the whole Data Docs site).
    data_docs: the validation-results page of that site, as one HTML file for the KFP UI.
    passed: the dataset passed; with allow_quarantine also when only individual samples are bad (they
    stay quarantined) and every dataset-level check passed — as ``faceparse data validate --allow-quarantine``."""
    import shutil
    from collections import namedtuple
    from pathlib import Path

    from faceparse.data.validate import validate_dataset
    from faceparse.launch.params import component_params

    params = component_params(params_yaml, overrides, {"validate.out_dir": report.path})
    v = params.get("validate") or {}
    kwargs = {k: v[k] for k in ("min_classes", "max_background_fraction", "min_face_fraction") if k in v}
    s = validate_dataset(dataset.path, report.path, progress=False, **kwargs)

    pages = sorted(Path(report.path, "data_docs", "validations").rglob("*.html"))
    shutil.copyfile(pages[-1] if pages else s["data_docs"], data_docs.path)
    dataset_ok = all(e["success"] for e in s["expectations"] if e.get("kind") == "dataset")
    passed = bool(s["success"] or (allow_quarantine and dataset_ok))
    failed = [f"{e['name']}({e.get('column') or ''})" for e in s["expectations"] if not e["success"]]
    text = (f"{s['n_bad']} of {s['n_samples']} samples bad"
            + (f"; failed expectations: {', '.join(failed)}" if failed else "")
            + (f"; dataset problems: {'; '.join(s['problems'])}" if s["problems"] else "")
            + (f"; e.g. {next(iter(s['bad']))}: {s['bad'][next(iter(s['bad']))][0]}" if s["bad"] else ""))
    report.metadata.update({"success": bool(s["success"]), "n_samples": s["n_samples"], "n_bad": s["n_bad"]})
    data_docs.metadata.update({"success": bool(s["success"])})
    print(f"validation {'passed' if passed else 'FAILED'}: {text}")
    return namedtuple("ValidateOutputs", ["passed", "summary"])(passed, text)
