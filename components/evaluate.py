"""evaluate: test-split metrics of the trained bundle → kfp Metrics, ClassificationMetrics (confusion
matrix) and the report files (eval.json, plots/, table.md)."""

from typing import List, Optional

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from .base import COMPONENT


@dsl.component(**COMPONENT)
def evaluate(params_yaml: str, overrides: List[str], dataset: Input[Dataset], validation: Input[Artifact],
             model: Input[Model], metrics: Output[Metrics], confusion: Output[ClassificationMetrics],
             report: Output[Artifact], stage: str = "parser", gate_metric: str = "",
             deocclude: Optional[Input[Model]] = None, deocclude_registered: Optional[Input[Artifact]] = None
             ) -> float:
    """faceparse.evaluate.evaluate(params, bundle_dir=model, dataset_dir=dataset) with the metrics file,
    plots and table written into ``report``; every scalar metric logged to ``metrics`` (test_* names, as
    in MLflow) and, for the parser, the pixel confusion matrix (rows = truth) to ``confusion``. Returns the
    stage's primary test metric (mean F1 / NME), or the result's ``gate_metric`` when one is named (fisn:
    psnr_gain_db, PSNR over the input as it is): the pipeline's quality gate; one output on purpose —
    kfp.local 2.17 cannot resolve a named output of a multi-output task in a dsl.If condition.
    deocclude / deocclude_registered (recon3d): the FISN bundle that de-occludes the occluded test photos,
    and its registration record (``evaluate.deocclude`` / ``evaluate.deocclude_registered``)."""
    import csv
    from pathlib import Path

    from faceparse.evaluate import evaluate as evaluate_step
    from faceparse.launch.params import component_params
    from faceparse.stages import get_stage

    rep = Path(report.path)
    params = component_params(params_yaml, overrides, {
        "data.dir": dataset.path,
        "validate.out_dir": validation.path,
        "evaluate.metrics_file": str(rep / "eval.json"),
        "evaluate.plots_dir": str(rep / "plots"),
        "evaluate.table_file": str(rep / "table.md"),
        **({"evaluate.deocclude": deocclude.path} if deocclude is not None else {}),
        **({"evaluate.deocclude_registered": deocclude_registered.path} if deocclude_registered is not None else {}),
    }, stage=stage)
    st = get_stage(stage)
    result = evaluate_step(params, bundle_dir=model.path, dataset_dir=dataset.path, progress=False)
    for name, value in st.mlflow_metrics(result).items():
        metrics.log_metric(name, value)
    matrix = rep / "plots" / "confusion_matrix.csv"
    if matrix.is_file():
        with open(matrix, newline="") as f:
            rows = list(csv.reader(f))
        confusion.log_confusion_matrix(rows[0][1:], [[int(x) for x in r[1:]] for r in rows[1:]])
    gate = gate_metric or st.primary_metric
    if gate_metric and not isinstance(result.get(gate), (int, float)):
        numbers = sorted(k for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        raise ValueError(f"gate_metric {gate!r} is not a number in the {stage} evaluation ({result.get(gate)!r}); "
                         f"its numbers: {numbers}")
    report.metadata.update({st.primary_metric: result.get(st.primary_metric), gate: result.get(gate),
                            "n_images": result.get("n_images")})
    return float(result.get(gate) or 0.0)
